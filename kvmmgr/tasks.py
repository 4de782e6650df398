"""Periodic work of the kvmmgr core app."""

from __future__ import annotations

from pathlib import Path

from celery import shared_task
from django.conf import settings

from kvmmgr import authlog


@shared_task(name="kvmmgr.tasks.import_auth_failures", ignore_result=True, soft_time_limit=60)
def import_auth_failures() -> int:
    """Copy nginx's basic-auth failures into the audit log (none without the setting)."""
    path = settings.KVMMGR_AUTH_FAILURE_LOG
    if not path:
        return 0
    return authlog.import_failures(Path(path))
