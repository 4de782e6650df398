"""The reaper: running jobs whose worker stopped sending heartbeats end, or resume.

A kind registered with ``OnStale.REQUEUE`` is queued again (its handler resumes
from the job's record); any other fails, says what to check, and the registry's
reap hooks run (e.g. a refresh of the job's node).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from jobs import registry
from jobs.choices import JobStatus
from jobs.context import JobContext
from jobs.models import Job
from jobs.registry import OnStale
from jobs.runner import enqueue

log = logging.getLogger(__name__)


def _requeue(job_id: int, limit: datetime, heartbeat: datetime) -> bool:
    """Queue a stale job again (its children, if any, are reaped on their own)."""
    updated = Job.objects.filter(
        pk=job_id, status=JobStatus.RUNNING, heartbeat_at__lt=limit
    ).update(status=JobStatus.QUEUED, worker="", heartbeat_at=None)
    if not updated:
        return False
    job = Job.objects.get(pk=job_id)
    JobContext(job).log(
        f"reaper: the worker running this {job.get_kind_display()} stopped (last heartbeat "
        f"{heartbeat:%Y-%m-%d %H:%M:%S} UTC); queued again to resume"
    )
    enqueue(job_id)
    return True


def _fail(job_id: int, limit: datetime, heartbeat: datetime) -> Job | None:
    job_type = registry.find(Job.objects.filter(pk=job_id).values_list("kind", flat=True)[0])
    what = job_type.stale_hint if job_type else "the target's state"
    message = (
        f"the worker running this job stopped (last heartbeat "
        f"{heartbeat:%Y-%m-%d %H:%M:%S} UTC); check {what}"
    )
    updated = Job.objects.filter(
        pk=job_id, status=JobStatus.RUNNING, heartbeat_at__lt=limit
    ).update(status=JobStatus.FAILED, finished_at=timezone.now(), error=message)
    if not updated:
        return None
    job = Job.objects.select_related("node").get(pk=job_id)
    if job_type is not None and job_type.on_reaped is not None:
        job_type.on_reaped(job)
    JobContext(job).log(f"reaper: {message}")
    return job


def reap_stale_jobs() -> list[int]:
    """End (or queue again) running jobs whose worker stopped sending heartbeats."""
    limit = timezone.now() - timedelta(seconds=settings.KVMMGR_JOB_STALE_AFTER)
    stale = list(
        Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=limit).values_list(
            "pk", "heartbeat_at", "kind"
        )
    )
    reaped = []
    for job_id, heartbeat, kind in stale:
        job_type = registry.find(kind)
        if job_type is not None and job_type.on_stale == OnStale.REQUEUE:
            if _requeue(job_id, limit, heartbeat):
                reaped.append(job_id)
                continue
        job = _fail(job_id, limit, heartbeat)
        if job is None:
            continue
        reaped.append(job_id)
        for hook in registry.reap_hooks():
            try:
                hook(job)
            except Exception:  # one hook's failure must not stop the reaping
                log.exception("reap hook %r failed for job %s", hook, job_id)
    return reaped
