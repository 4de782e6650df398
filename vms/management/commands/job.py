from __future__ import annotations

import json
from argparse import ArgumentParser

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from kvmmgr.cli import acting
from vms.choices import JobStatus
from vms.management.commands._jobcli import follow, job_as_dict
from vms.models import Job
from vms.services.jobs import request_abort
from vms.services.migration.request import request_postcopy


class Command(BaseCommand):
    help = "Show one job (with its log); --follow until it ends; --abort to stop it."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("id", type=int)
        parser.add_argument("--follow", action="store_true")
        parser.add_argument("--abort", action="store_true")
        parser.add_argument(
            "--postcopy", action="store_true", help="switch a running migration to post-copy"
        )
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: object, **opts: object) -> None:
        job = Job.objects.select_related("node").filter(pk=opts["id"]).first()
        if job is None:
            raise CommandError(f"no job {opts['id']}")
        if opts["abort"]:
            with acting() as actor:
                aborted = request_abort(job, actor)
            if not aborted:
                raise CommandError(f"job {job.pk} is {job.status}: nothing to abort")
            self.stdout.write(f"abort requested for job {job.pk}")
        if opts["postcopy"]:
            try:
                with acting() as actor:
                    request_postcopy(job, actor)
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from exc
            self.stdout.write(f"switch to post-copy requested for job {job.pk}")
        if opts["follow"]:
            job = follow(job, self.stdout, show_log=not opts["json"])
        else:
            job.refresh_from_db()
        if opts["json"]:
            self.stdout.write(json.dumps({**job_as_dict(job), "log": job.log}, indent=2))
        elif not opts["follow"]:
            self.stdout.write(f"job {job.pk}: {job.get_kind_display()} {job.target_name}")
            self.stdout.write(f"status: {job.status} ({job.progress}%)  by {job.requested_by}")
            if job.command:
                self.stdout.write(f"command: {job.command}")
            if job.error:
                self.stdout.write(f"error: {job.error}")
            self.stdout.write(job.log.rstrip())
        if opts["follow"] and job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"job {job.pk} {job.status}: {job.error or 'no reason recorded'}")
