from __future__ import annotations

import json
from argparse import ArgumentParser

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from jobs import actions, registry
from jobs.choices import JobStatus
from jobs.cli import follow, job_as_dict
from jobs.models import Job
from kvmmgr.cli import acting


def _action_names() -> dict[str, str]:
    """Every extra action a registered kind declares: name → help."""
    names: dict[str, str] = {}
    for job_type in registry.types():
        for action in job_type.actions:
            names.setdefault(action.name, f"{action.label.lower()} ({job_type.label} jobs)")
    return names


class Command(BaseCommand):
    help = (
        "Show one job (with its log); --follow until it ends; --abort to stop it; "
        "the extra actions its kind offers (e.g. --postcopy) as flags."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("id", type=int)
        parser.add_argument("--follow", action="store_true")
        parser.add_argument("--abort", action="store_true")
        for name, help_text in _action_names().items():
            parser.add_argument(f"--{name}", action="store_true", dest=f"action_{name}",
                                help=help_text)  # fmt: skip
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: object, **opts: object) -> None:
        job = Job.objects.select_related("node").filter(pk=opts["id"]).first()
        if job is None:
            raise CommandError(f"no job {opts['id']}")
        if opts["abort"]:
            with acting() as actor:
                aborted = actions.request_abort(job, actor)
            if not aborted:
                raise CommandError(f"job {job.pk} is {job.status}: nothing to abort")
            self.stdout.write(f"abort requested for job {job.pk}")
        for name in _action_names():
            if not opts.get(f"action_{name}"):
                continue
            try:
                with acting() as actor:
                    done = actions.perform(job, name, actor)
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from exc
            self.stdout.write(f"{done.done[:1].lower()}{done.done[1:]} for job {job.pk}")
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
