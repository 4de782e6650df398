from __future__ import annotations

import json
from argparse import ArgumentParser

from django.core.management.base import BaseCommand

from jobs.choices import JobStatus
from jobs.cli import job_as_dict
from jobs.models import Job


class Command(BaseCommand):
    help = "List recent jobs with status, duration and error."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--limit", type=int, default=30)
        parser.add_argument("--active", action="store_true", help="only queued or running jobs")
        parser.add_argument("--vm", help="only jobs on this VM name")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: object, **opts: object) -> None:
        jobs = Job.objects.select_related("node")
        if opts["active"]:
            jobs = jobs.filter(status__in=JobStatus.active())
        if opts["vm"]:
            jobs = jobs.filter(target_name=opts["vm"])
        rows = list(jobs[: max(1, int(opts["limit"]))])  # type: ignore[call-overload]
        if opts["json"]:
            self.stdout.write(json.dumps([job_as_dict(j) for j in rows], indent=2))
            return
        self.stdout.write(
            f"{'ID':>5}  {'KIND':<11} {'TARGET':<24} {'STATUS':<10} {'PROG':>4}  {'TIME':>7}  ERROR"
        )
        for job in rows:
            duration = job.duration_seconds
            took = f"{duration:6.1f}s" if duration is not None else "      -"
            self.stdout.write(
                f"{job.pk:>5}  {job.kind:<11} {job.target_name[:24]:<24} {job.status:<10} "
                f"{job.progress:>3}%  {took}  {job.error[:80]}"
            )
