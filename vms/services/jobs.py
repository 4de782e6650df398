"""Submitting, running and reaping jobs: the one runner every long operation goes through.

A job is claimed atomically (``queued`` → ``running`` in one UPDATE), runs its
handler with a ``JobContext`` for logging and progress, keeps a heartbeat while
it runs, and always ends in a terminal status: whatever the handler raises, and
even when its worker dies (the reaper fails jobs whose heartbeat stopped).
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import threading
import traceback
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import (
    DatabaseError,
    IntegrityError,
    connection,
    transaction,
)
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone
from django.utils.module_loading import import_string

from kvmmgr import audit
from kvmmgr.access import Actor, Permission
from nodes.hypervisor import HypervisorError
from nodes.models import Node
from vms.choices import JobKind, JobStatus
from vms.models import Job, VirtualMachine

log = logging.getLogger(__name__)

# Where each kind of job is implemented; imported when a job of that kind runs.
HANDLERS: dict[str, str] = {
    JobKind.CREATE: "vms.services.create.run_create",
    JobKind.START: "vms.services.lifecycle.run_start",
    JobKind.SHUTDOWN: "vms.services.lifecycle.run_shutdown",
    JobKind.FORCE_OFF: "vms.services.lifecycle.run_force_off",
    JobKind.REBOOT: "vms.services.lifecycle.run_reboot",
    JobKind.DELETE: "vms.services.lifecycle.run_delete",
    JobKind.MIGRATE: "vms.services.migration.live.run_migrate",
    JobKind.EVACUATE: "vms.services.evacuation.run_evacuate",
    # By name, so vms never imports vpn (vpn.jobs imports this module).
    JobKind.VPN_UP: "vpn.jobs.run_action",
    JobKind.VPN_START: "vpn.jobs.run_action",
    JobKind.VPN_STOP: "vpn.jobs.run_action",
    JobKind.VPN_RESTART: "vpn.jobs.run_action",
}


class JobConflict(Exception):
    """The target already has an active job."""

    def __init__(self, message: str, active: Job | None) -> None:
        super().__init__(message)
        self.active = active


class JobAborted(Exception):
    """Raised inside a handler when an admin asked to abort."""


class JobFailed(Exception):
    """A handler's expected failure: ``message`` becomes the job's error, with no traceback.

    For failures of systems other than libvirt (``HypervisorError``), e.g. OpenVPN.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def lock_key_for(vm: VirtualMachine | None, name: str) -> str:
    return f"vm:{vm.uuid}" if vm is not None else f"vmname:{name}"


def submit(
    kind: str,
    *,
    target_name: str,
    requested_by: str,
    vm: VirtualMachine | None = None,
    node: Node | None = None,
    params: dict[str, Any] | None = None,
    lock_key: str | None = None,
) -> Job:
    """Create a queued job and hand it to a worker once the transaction commits.

    Raises ``JobConflict`` when the VM (or, for a VM being created, its name;
    or whatever ``lock_key`` names, e.g. ``vpn:<tunnel>``) already has a queued
    or running job: the database's partial unique index decides, so concurrent
    submissions cannot both win.
    """
    lock_key = lock_key or lock_key_for(vm, target_name)
    try:
        with transaction.atomic():
            job = Job.objects.create(
                kind=kind,
                vm=vm,
                node=node or (vm.node if vm is not None else None),
                target_name=target_name,
                lock_key=lock_key,
                params=params or {},
                requested_by=requested_by,
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

    from vms.tasks import run_job

    transaction.on_commit(lambda: run_job.delay(job.pk))
    return job


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
    try:
        run = handler or import_string(HANDLERS[job.kind])
        with _Heartbeat(job.pk, settings.KVMMGR_JOB_HEARTBEAT):
            run(ctx)
    except JobAborted as exc:
        ctx.log(f"aborted: {exc}")
        _finish(job.pk, JobStatus.ABORTED, error=str(exc))
        return JobStatus.ABORTED
    except (HypervisorError, JobFailed) as exc:
        ctx.log(f"failed: {exc.message}")
        _finish(job.pk, JobStatus.FAILED, error=exc.message)
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


def abort_permission(job: Job) -> Permission:
    """Aborting VPN work needs the role that may start it (admin), not just the
    operator's right to abort VM jobs."""
    if job.kind.startswith("vpn_"):
        return Permission.VPN_MANAGE
    return Permission.NODE_MANAGE if job.kind == JobKind.EVACUATE else Permission.JOB_ABORT


def request_abort(job: Job, actor: Actor) -> bool:
    """Ask a job to stop; a queued job is aborted at once. Returns whether anything changed."""
    with audit.action(
        actor, abort_permission(job), "job.abort", target=f"job #{job.pk} {job.target_name}"
    ) as done:
        done.job = job
        now = timezone.now()
        if Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
            status=JobStatus.ABORTED, finished_at=now, error="aborted before it started"
        ):
            done.detail = "aborted before it started"
            return True
        changed = bool(
            Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(abort_requested=True)
        )
        done.detail = "abort requested" if changed else f"nothing to abort ({job.status})"
        return changed


def _requeue(job_id: int, limit: Any, heartbeat: Any) -> bool:
    """Queue a stale evacuation again: its record says what to resume (its children are
    reaped on their own)."""
    updated = Job.objects.filter(
        pk=job_id, status=JobStatus.RUNNING, heartbeat_at__lt=limit
    ).update(status=JobStatus.QUEUED, worker="", heartbeat_at=None)
    if not updated:
        return False
    JobContext(Job.objects.get(pk=job_id)).log(
        f"reaper: the worker running this evacuation stopped (last heartbeat "
        f"{heartbeat:%Y-%m-%d %H:%M:%S} UTC); queued again to resume"
    )
    from vms.tasks import run_job

    transaction.on_commit(lambda: run_job.delay(job_id))
    return True


def reap_stale_jobs() -> list[int]:
    """Fail running jobs whose worker stopped sending heartbeats (an evacuation is
    queued again instead, and resumes).

    Their targets' nodes are refreshed so the inventory shows what really happened.
    """
    limit = timezone.now() - timedelta(seconds=settings.KVMMGR_JOB_STALE_AFTER)
    stale = list(
        Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=limit).values_list(
            "pk", "node_id", "heartbeat_at", "kind"
        )
    )
    reaped = []
    for job_id, node_id, heartbeat, kind in stale:
        if kind == JobKind.EVACUATE and _requeue(job_id, limit, heartbeat):
            reaped.append(job_id)
            continue
        what = (
            "the tunnel's state (manage.py vpn status)"
            if kind in JobKind.vpn()
            else "the VM's state on its node"
        )
        message = (
            f"the worker running this job stopped (last heartbeat "
            f"{heartbeat:%Y-%m-%d %H:%M:%S} UTC); check {what}"
        )
        updated = Job.objects.filter(
            pk=job_id, status=JobStatus.RUNNING, heartbeat_at__lt=limit
        ).update(status=JobStatus.FAILED, finished_at=timezone.now(), error=message)
        if updated:
            job = Job.objects.get(pk=job_id)
            if job.kind == JobKind.MIGRATE:
                # libvirt may finish a migration whose client died: the reconciler checks.
                job.params["worker_died"] = True
                Job.objects.filter(pk=job_id).update(params=job.params)
            JobContext(job).log(f"reaper: {message}")
            reaped.append(job_id)
            if node_id is not None:
                from nodes.services.registry import request_refresh

                node = Node.objects.filter(pk=node_id).first()
                if node is not None:
                    request_refresh([node], actor=Actor.system("reaper"))
    return reaped
