"""What a handler gets: its job, and ways to log, record the command, report progress."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Sequence
from typing import Any

from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from jobs.errors import JobAborted
from jobs.models import Job

log = logging.getLogger("jobs")


class JobContext:
    """What a handler uses to report: log lines, the equivalent command, progress."""

    def __init__(self, job: Job) -> None:
        self.job = job

    @property
    def params(self) -> dict[str, Any]:
        return self.job.params

    def log(self, line: str) -> None:
        stamp = timezone.now().strftime("%H:%M:%S")
        text = f"{stamp} {line}\n"
        Job.objects.filter(pk=self.job.pk).update(log=Concat(F("log"), Value(text)))
        self.job.log += text
        log.info("job %s: %s", self.job.pk, line)

    def set_command(self, argv: Sequence[str]) -> None:
        """Record the command line an admin could run by hand to do the same."""
        command = shlex.join(argv)
        Job.objects.filter(pk=self.job.pk).update(command=command)
        self.job.command = command
        self.log(f"$ {command}")

    def progress(self, percent: int, **detail: Any) -> None:
        percent = max(0, min(100, int(percent)))
        Job.objects.filter(pk=self.job.pk).update(
            progress=percent, progress_detail=detail, heartbeat_at=timezone.now()
        )
        self.job.progress, self.job.progress_detail = percent, detail

    def check_abort(self) -> None:
        if Job.objects.filter(pk=self.job.pk, abort_requested=True).exists():
            raise JobAborted("aborted by request")
