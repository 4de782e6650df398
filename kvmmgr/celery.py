"""The Celery app: Redis broker, tasks discovered from the apps, and the beat schedule."""

from __future__ import annotations

import os

from celery import Celery
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kvmmgr.settings")

app = Celery("kvmmgr")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _schedule_periodic_tasks(sender: Celery, **_: object) -> None:
    # Read from settings here, not at import time, so tests may change the interval.
    sender.add_periodic_task(
        settings.KVMMGR_INVENTORY_INTERVAL,
        sender.signature("nodes.tasks.refresh_all_nodes"),
        name="refresh every enabled node's inventory",
    )
    sender.add_periodic_task(
        max(settings.KVMMGR_JOB_STALE_AFTER / 2, 1.0),
        sender.signature("vms.tasks.reap_stale_jobs"),
        name="fail jobs whose worker died",
    )
    sender.add_periodic_task(
        settings.KVMMGR_RECONCILE_INTERVAL,
        sender.signature("vms.tasks.reconcile_migrations"),
        name="settle migrations that ended badly",
    )
    sender.add_periodic_task(
        settings.KVMMGR_STATS_INTERVAL,
        sender.signature("stats.tasks.sample_all_nodes"),
        name="sample every online node's resource stats",
    )
    sender.add_periodic_task(
        settings.KVMMGR_STATS_ROLLUP_INTERVAL,
        sender.signature("stats.tasks.roll_up_and_prune"),
        name="roll up and prune stats",
    )
    sender.add_periodic_task(
        settings.KVMMGR_AUTH_FAILURE_INTERVAL,
        sender.signature("kvmmgr.tasks.import_auth_failures"),
        name="import nginx's refused logins into the audit log",
    )
