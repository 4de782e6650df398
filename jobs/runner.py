"""Submitting and running jobs: the one runner every long operation goes through.

A job is claimed atomically (``queued`` → ``running`` in one UPDATE), runs its
kind's handler with a ``JobContext`` for logging and progress, keeps a heartbeat
while it runs, and always ends in a terminal status: whatever the handler raises,
and even when its worker dies (``jobs.reaper`` fails jobs whose heartbeat stopped).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, connection, models, transaction
from django.utils import timezone

from jobs import registry
from jobs.choices import JobStatus
from jobs.context import JobContext
from jobs.errors import JobAborted, JobConflict, JobFailed, UnknownJobKind
from jobs.models import Job

log = logging.getLogger(__name__)


# How a queued job reaches a worker: the Celery task's ``delay``, set by
# ``JobsConfig.ready()`` (the task module imports this one, not the other way round).
_dispatch: Callable[[int], object] | None = None


def set_dispatch(dispatch: Callable[[int], object]) -> None:
    global _dispatch  # noqa: PLW0603 - set once, at app start
    _dispatch = dispatch


def enqueue(job_id: int) -> None:
    """Hand a queued job to a worker once the current transaction commits."""
    if _dispatch is None:
        raise RuntimeError("jobs: no dispatcher set; is the jobs app in INSTALLED_APPS?")
    dispatch = _dispatch
    transaction.on_commit(lambda: dispatch(job_id))


def submit(
    kind: str,
    *,
    target_name: str,
    requested_by: str,
    vm: models.Model | None = None,
    node: models.Model | None = None,
    params: dict[str, Any] | None = None,
    lock_key: str | None = None,
    parent: Job | None = None,
) -> Job:
    """Create a queued job and hand it to a worker once the transaction commits.

    Raises ``UnknownJobKind`` for a kind no app registered, and ``JobConflict``
    when ``lock_key`` (by default the kind's own, e.g. ``vm:<uuid>``) already has a
    queued or running job: the database's partial unique index decides, so
    concurrent submissions cannot both win.
    """
    job_type = registry.get(kind)
    if lock_key is None:
        if job_type.lock_key is None:
            raise ValueError(f"job kind {kind!r} has no default lock key: pass lock_key")
        lock_key = job_type.lock_key(vm, target_name)
    if node is None and vm is not None:
        node = vm.node  # type: ignore[attr-defined]
    try:
        with transaction.atomic():
            job = Job.objects.create(
                kind=kind,
                vm=vm,
                node=node,
                target_name=target_name,
                lock_key=lock_key,
                params=params or {},
                requested_by=requested_by,
                parent=parent,
            )
    except IntegrityError as exc:
        active = Job.objects.filter(lock_key=lock_key, status__in=JobStatus.active()).first()
        detail = (
            f"job #{active.pk} ({active.get_kind_display()}, {active.status})"
            if active
            else "a job"
        )
        raise JobConflict(
            f"{target_name} already has an active job: {detail}. "
            "Wait for it to finish or abort it.",
            active,
        ) from exc
    enqueue(job.pk)
    return job


class _Heartbeat:
    """Touches ``heartbeat_at`` from a thread while the handler works."""

    def __init__(self, job_id: int, interval: float) -> None:
        self.job_id = job_id
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name=f"job-{job_id}-heartbeat", daemon=True
        )

    def _run(self) -> None:
        try:
            while not self.stop.wait(self.interval):
                try:
                    Job.objects.filter(pk=self.job_id, status=JobStatus.RUNNING).update(
                        heartbeat_at=timezone.now()
                    )
                except DatabaseError:
                    # A busy database must not kill the heartbeat; the next beat retries.
                    log.warning("job %s: heartbeat write failed", self.job_id, exc_info=True)
        finally:
            connection.close()

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def _finish(job_id: int, status: str, *, error: str = "", progress: int | None = None) -> None:
    fields: dict[str, Any] = {"status": status, "finished_at": timezone.now(), "error": error}
    if progress is not None:
        fields["progress"] = progress
    # Only a running job is finished here: the reaper may have failed it meanwhile.
    Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(**fields)


def _claim(job_id: int) -> Job | None:
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING,
        started_at=now,
        heartbeat_at=now,
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )
    return Job.objects.select_related("vm", "node").get(pk=job_id) if claimed else None


def execute(job_id: int, handler: Callable[[JobContext], None] | None = None) -> str | None:
    """Run a queued job to a terminal status; returns it, or None if not ours to run."""
    job = _claim(job_id)
    if job is None:
        return None
    ctx = JobContext(job)
    expected = (JobFailed, *registry.expected_failures())
    try:
        run = handler or registry.get(job.kind).resolve_handler()
        with _Heartbeat(job.pk, settings.KVMMGR_JOB_HEARTBEAT):
            run(ctx)
    except JobAborted as exc:
        ctx.log(f"aborted: {exc}")
        _finish(job.pk, JobStatus.ABORTED, error=str(exc))
        return JobStatus.ABORTED
    except expected as exc:
        message = str(getattr(exc, "message", "") or exc)
        ctx.log(f"failed: {message}")
        _finish(job.pk, JobStatus.FAILED, error=message)
        return JobStatus.FAILED
    except UnknownJobKind as exc:
        ctx.log(f"failed: {exc}")
        _finish(job.pk, JobStatus.FAILED, error=str(exc))
        return JobStatus.FAILED
    except ValidationError as exc:
        message = "; ".join(exc.messages)
        ctx.log(f"refused: {message}")
        _finish(job.pk, JobStatus.FAILED, error=message)
        return JobStatus.FAILED
    except Exception as exc:  # any bug must still end the job
        ctx.log("internal error:\n" + traceback.format_exc())
        _finish(job.pk, JobStatus.FAILED, error=f"internal error: {exc!r}")
        return JobStatus.FAILED
    ctx.log("done")
    _finish(job.pk, JobStatus.SUCCEEDED, progress=100)
    return JobStatus.SUCCEEDED
