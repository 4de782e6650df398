"""The kinds of job ``vms`` runs, declared to the jobs registry from ``VmsConfig.ready()``."""

from __future__ import annotations

from typing import Any

from jobs import registry
from jobs.models import Job
from jobs.registry import JobAction, JobType, OnStale
from kvmmgr.access import Permission
from vms.choices import JobKind

VM_STATE = "the VM's state on its node"


def lock_key_for(vm: Any, name: str) -> str:
    """One active job per VM: by UUID, or by name for a VM being created."""
    return f"vm:{vm.uuid}" if vm is not None else f"vmname:{name}"


def _mark_worker_died(job: Job) -> None:
    """libvirt may finish a migration whose client died: the reconciler checks."""
    job.params["worker_died"] = True
    Job.objects.filter(pk=job.pk).update(params=job.params)


def _postcopy_allowed(job: Job) -> bool:
    return job.is_active and bool(job.params.get("postcopy"))


POSTCOPY = JobAction(
    name="postcopy",
    label="Switch to post-copy",
    permission=Permission.VM_MIGRATE,
    run="vms.services.migration.request.request_postcopy",
    available=_postcopy_allowed,
    hint="The guest runs on the destination at once and fetches missing pages from the source",
    done="Switch to post-copy requested",
)


def _vm_job(kind: JobKind, handler: str, **extra: Any) -> JobType:
    return JobType(
        kind=kind.value,
        label=kind.label,
        handler=handler,
        stale_hint=VM_STATE,
        lock_key=lock_key_for,
        **extra,
    )


def register() -> None:
    lifecycle = "vms.services.lifecycle"
    for job_type in (
        _vm_job(JobKind.CREATE, "vms.services.create.run_create"),
        _vm_job(JobKind.START, f"{lifecycle}.run_start"),
        _vm_job(JobKind.SHUTDOWN, f"{lifecycle}.run_shutdown"),
        _vm_job(JobKind.FORCE_OFF, f"{lifecycle}.run_force_off"),
        _vm_job(JobKind.REBOOT, f"{lifecycle}.run_reboot"),
        _vm_job(JobKind.DELETE, f"{lifecycle}.run_delete"),
        _vm_job(
            JobKind.MIGRATE,
            "vms.services.migration.live.run_migrate",
            on_reaped=_mark_worker_died,
            actions=(POSTCOPY,),
            migration_like=True,
        ),
        # A parent job of child migrations; it resumes from its record after a reaping.
        _vm_job(
            JobKind.EVACUATE,
            "vms.services.evacuation.run_evacuate",
            abort_permission=Permission.NODE_MANAGE,
            on_stale=OnStale.REQUEUE,
            detail_template="vms/evacuation_moves.html",
        ),
    ):
        registry.register(job_type)
