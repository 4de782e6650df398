"""Parent and child jobs: a job that starts others (an evacuation's migrations)
records itself as their parent, follows them, and aborts them when it is aborted."""

from __future__ import annotations

import time

from django.db.models import QuerySet

from jobs.actions import request_abort
from jobs.choices import JobStatus
from jobs.models import Job
from kvmmgr.access import Actor


def adopt(parent: Job, child: Job) -> Job:
    """Record ``parent`` as the job that started ``child`` (submitted elsewhere)."""
    Job.objects.filter(pk=child.pk).update(parent=parent)
    child.parent = parent
    return child


def children(parent: Job) -> QuerySet[Job]:
    return Job.objects.filter(parent=parent).select_related("node", "vm").order_by("pk")


def active_children(parent: Job) -> QuerySet[Job]:
    return Job.objects.filter(parent=parent, status__in=JobStatus.active())


def abort_children(parent: Job, actor: Actor, ids: list[int] | None = None) -> int:
    """Ask the parent's active children (or its children ``ids``, whatever their status:
    each request is audited) to abort; returns how many changed."""
    if ids is None:
        targets = active_children(parent).order_by("pk")
    else:
        targets = Job.objects.filter(parent=parent, pk__in=ids).order_by("pk")
    return sum(1 for child in list(targets) if request_abort(child, actor))


def wait_for_children(parent: Job, poll_seconds: float = 1.0) -> None:
    """Block until none of the parent's children is queued or running."""
    while active_children(parent).exists():
        time.sleep(poll_seconds)
