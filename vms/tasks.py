"""Celery tasks for VMs: thin wrappers over vms.services.jobs."""

from __future__ import annotations

from celery import shared_task
from django.db import close_old_connections

from vms.services import jobs


@shared_task(name="vms.tasks.run_job", ignore_result=True, acks_late=True)
def run_job(job_id: int) -> str | None:
    # Jobs can run for minutes: start on a connection the database has not dropped.
    close_old_connections()
    # A redelivered message finds the job no longer queued and does nothing.
    return jobs.execute(job_id)


@shared_task(name="vms.tasks.reap_stale_jobs", ignore_result=True)
def reap_stale_jobs() -> int:
    return len(jobs.reap_stale_jobs())


@shared_task(name="vms.tasks.reconcile_migrations", ignore_result=True)
def reconcile_migrations() -> int:
    from vms.services.reconcile import reconcile_all

    return len(reconcile_all())
