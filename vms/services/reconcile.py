"""Settling migrations that ended badly: check both nodes, tell the truth, clean up.

A migration job can end without knowing the outcome: its worker was killed (the
reaper failed the job, but libvirt goes on with the migration: the reconciler aborts
it if it still runs, or records that it completed),
or the link to the destination was cut so the volumes the job created there could
not be removed. A periodic task looks at such jobs again, asks both nodes where
the VM runs, corrects the job's status if the VM in fact moved, and removes the
leftover destination volumes once the destination is reachable and does not run
the VM.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from jobs.choices import JobStatus
from jobs.context import JobContext
from jobs.models import Job
from nodes.hypervisor import HypervisorError
from nodes.hypervisor import migration_prep as prep
from nodes.hypervisor.states import VMState
from nodes.models import Node
from vms.choices import JobKind
from vms.models import VirtualMachine
from vms.services import inventory
from vms.services.migration.settle import settle_destination

log = logging.getLogger(__name__)


def _needs_reconcile(job: Job) -> bool:
    if job.params.get("reconciled"):
        return False
    pending = [v for v in job.params.get("created_volumes", []) if not v.get("removed")]
    return bool(pending) or bool(job.params.get("worker_died"))


def pending_jobs() -> list[Job]:
    candidates = Job.objects.filter(
        kind=JobKind.MIGRATE, status__in=[JobStatus.FAILED, JobStatus.ABORTED]
    ).select_related("vm", "node")
    return [job for job in candidates if _needs_reconcile(job)]


def _describe(state: VMState | None) -> str:
    return state.label if state is not None else "absent"


def reconcile(job: Job) -> str:
    """Settle one job; returns what was found (for logs and the command)."""
    ctx = JobContext(job)
    source = job.node
    dest = Node.objects.filter(pk=job.params.get("destination_id")).first()
    vm = job.vm or VirtualMachine.objects.filter(uuid=job.lock_key.removeprefix("vm:")).first()
    if source is None or dest is None or vm is None:
        job.params["reconciled"] = True
        Job.objects.filter(pk=job.pk).update(params=job.params)
        return "nothing to check: the VM or a node is gone from the manager"
    uuid = str(vm.uuid)
    try:
        on_source = prep.domain_state(source.uri, uuid)
        on_dest = prep.domain_state(dest.uri, uuid)
    except HypervisorError as exc:
        return f"not yet: {exc.message}"
    found = f"{source.name}: {_describe(on_source)}; {dest.name}: {_describe(on_dest)}"
    if job.params.get("worker_died") and not job.params.get("orphan_checked"):
        # libvirt goes on with a peer-to-peer migration whose client died, unwatched:
        # no stall or destination watch, no convergence policy, no progress. Stop it,
        # so the VM stays where it was and the admin can start a supervised one.
        try:
            aborted = prep.abort_outgoing_migration(source.uri, uuid)
        except HypervisorError as exc:
            return f"not yet: {exc.message}"
        if aborted:
            ctx.log(
                f"reconciler: libvirt went on migrating after the job's worker stopped; "
                f"aborted that migration, the VM stays on {source.name}"
            )
        job.params["orphan_checked"] = True
        Job.objects.filter(pk=job.pk).update(params=job.params)
        if aborted:
            return f"{found}; aborted the unsupervised migration"
    if on_source == VMState.RUNNING and on_dest == VMState.RUNNING:
        ctx.log(f"reconciler: the VM runs on BOTH nodes ({found}); an admin must stop one")
        return f"split: {found}"
    # The source gave the domain up and the destination holds it: libvirt finished the
    # migration by itself, whatever state the VM ended in there.
    moved = on_source is None and on_dest is not None
    if job.params.get("worker_died") and moved:
        _record_finished_alone(ctx, job, vm, dest, state=on_dest, found=found)
        for volume in job.params.get("created_volumes", []):
            volume["removed"] = True  # they hold the VM's disks now
    else:
        if job.params.get("worker_died"):
            ctx.log(f"reconciler: the migration did not complete ({found})")
        try:
            settle_destination(ctx, vm, source, dest)
        except HypervisorError as exc:
            return f"not yet: {exc.message}"
    left = sum(1 for v in job.params.get("created_volumes", []) if not v.get("removed"))
    if left == 0:
        job.params["reconciled"] = True
        job.params["reconciled_at"] = timezone.now().isoformat()
    Job.objects.filter(pk=job.pk).update(params=job.params)
    for node in (source, dest):
        inventory.refresh_node(node)
    return found if left == 0 else f"{found}; {left} volume(s) still to remove"


def _record_finished_alone(
    ctx: JobContext, job: Job, vm: VirtualMachine, dest: Node, *, state: VMState | None, found: str
) -> None:
    """Tell the truth about a migration libvirt completed after the job's worker died.

    A paused arrival (libvirt's finish step never resumed it) is resumed; one that is
    running makes the job a success; any other state is reported with what to do,
    and the job stays failed, since the VM is not running.
    """
    if state == VMState.PAUSED and prep.resume_if_paused(dest.uri, str(vm.uuid)):
        ctx.log(f"reconciler: {vm.name} arrived paused on {dest.name}; resumed it")
        state = VMState.RUNNING
    if state == VMState.RUNNING:
        ctx.log(
            f"reconciler: the migration completed after its worker stopped ({found}); "
            "marking the job succeeded"
        )
        Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, error="", progress=100)
        return
    label = _describe(state)
    error = (
        f"the migration completed after its worker stopped: {vm.name} is on {dest.name} now "
        f"and gone from {job.node.name if job.node else 'the source'}, but it is {label} "
        f"there; start it on {dest.name} (`manage.py startvm {vm.name}`)"
    )
    ctx.log(f"reconciler: {error} ({found})")
    Job.objects.filter(pk=job.pk).update(error=error)


def reconcile_all() -> dict[int, str]:
    return {job.pk: reconcile(job) for job in pending_jobs()}
