"""Celery tasks that run and reap jobs: thin wrappers over the runner and the reaper.

The task names are the ones they had when the runner lived in ``vms``, so messages
queued before an upgrade still run and the beat schedule keeps its names.
"""

from __future__ import annotations

from celery import shared_task
from django.db import close_old_connections

from jobs import reaper, runner


@shared_task(name="vms.tasks.run_job", ignore_result=True, acks_late=True)
def run_job(job_id: int) -> str | None:
    # Jobs can run for minutes: start on a connection the database has not dropped.
    close_old_connections()
    # A redelivered message finds the job no longer queued and does nothing.
    return runner.execute(job_id)


@shared_task(name="vms.tasks.reap_stale_jobs", ignore_result=True)
def reap_stale_jobs() -> int:
    return len(reaper.reap_stale_jobs())
