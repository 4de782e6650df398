"""Shared options and output for commands that submit or follow jobs.

Every job-submitting command takes ``--wait`` (follow progress, exit non-zero
unless the job succeeds) and ``--json`` (machine-readable output for scripts).
"""

from __future__ import annotations

import json
import sys
import time
from argparse import ArgumentParser
from typing import Any, TextIO

from django.core.management.base import CommandError

from jobs.choices import JobStatus
from jobs.models import Job

# One indexed row read per poll: cheap, and --wait ends within 0.1 s of the job.
POLL_SECONDS = 0.1


def add_job_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true", help="follow the job until it ends")
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts)")


def job_as_dict(job: Job) -> dict[str, Any]:
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "target": job.target_name,
        "node": job.node.name if job.node_id and job.node else None,
        "progress": job.progress,
        "progress_detail": job.progress_detail,
        "error": job.error,
        "command": job.command,
        "requested_by": job.requested_by,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "duration_seconds": job.duration_seconds,
    }


def _bar(percent: int, width: int = 30) -> str:
    filled = width * percent // 100
    return "[" + "#" * filled + "-" * (width - filled) + f"] {percent:3d}%"


def follow(job: Job, out: TextIO, *, show_log: bool = True) -> Job:
    """Print progress and new log lines until the job reaches a terminal status."""
    printed = 0
    interactive = out.isatty() if hasattr(out, "isatty") else False
    last_progress = -1
    while True:
        job = Job.objects.select_related("node").get(pk=job.pk)
        if show_log and len(job.log) > printed:
            if interactive and last_progress >= 0:
                out.write("\n")
            out.write(job.log[printed:])
            printed = len(job.log)
            last_progress = -1
        if job.progress != last_progress and job.status == JobStatus.RUNNING:
            line = f"job {job.pk} {job.kind} {job.target_name} {_bar(job.progress)}"
            out.write(("\r" + line) if interactive else (line + "\n"))
            out.flush()
            last_progress = job.progress
        if job.status in JobStatus.terminal():
            if interactive and last_progress >= 0:
                out.write("\n")
            return job
        time.sleep(POLL_SECONDS)


def finish(job: Job, opts: dict[str, Any], out: TextIO | None = None) -> None:
    """Report a submitted job; with --wait follow it and fail unless it succeeded."""
    out = out or sys.stdout
    if opts.get("wait"):
        job = follow(job, sys.stderr if opts.get("json") else out, show_log=not opts.get("json"))
    if opts.get("json"):
        out.write(json.dumps(job_as_dict(job), indent=2) + "\n")
    elif not opts.get("wait"):
        out.write(f"queued job {job.pk}: {job.get_kind_display()} {job.target_name}\n")
        out.write(f"follow it with: manage.py job {job.pk} --follow\n")
    else:
        out.write(f"job {job.pk} {job.status}" + (f": {job.error}" if job.error else "") + "\n")
    if opts.get("wait") and job.status != JobStatus.SUCCEEDED:
        raise CommandError(f"job {job.pk} {job.status}: {job.error or 'no reason recorded'}")
