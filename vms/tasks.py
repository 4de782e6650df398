"""Celery tasks for VMs (the tasks that run and reap jobs live in ``jobs.tasks``)."""

from __future__ import annotations

from celery import shared_task

from vms.services.reconcile import reconcile_all


@shared_task(name="vms.tasks.reconcile_migrations", ignore_result=True)
def reconcile_migrations() -> int:
    return len(reconcile_all())
