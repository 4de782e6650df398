"""After libvirt's migration ended: the VM left on exactly one node, and the figures.

On success: resume if paused, remove the source disks, refresh both inventories,
record wall time, downtime and bytes. On failure: find where the VM runs, stop an
unfinished incoming copy, remove what the job created.
"""

from __future__ import annotations

from typing import Any

from jobs.context import JobContext
from jobs.errors import JobAborted
from nodes.hypervisor import HypervisorError, answers
from nodes.hypervisor import migration as hv
from nodes.hypervisor import migration_prep as prep
from nodes.hypervisor.states import VMState
from nodes.models import Node
from vms.models import VirtualMachine
from vms.services import inventory
from vms.services.migration.options import MIB, MigrationOptions
from vms.services.migration.volumes import remove_created_volumes
from vms.services.migration.watch import (
    DestinationLost,
    DestinationWatch,
    MigrationStalled,
)


def compression_result(stats: hv.MigrationStats | None) -> dict[str, int]:
    """The figures that show what compression did (empty when libvirt gave none)."""
    if stats is None or not stats.memory_normal_bytes:
        return {}
    return {"memory_normal_bytes": stats.memory_normal_bytes}


def compression_summary(result: dict[str, Any]) -> str:
    """One log line: memory pages sent vs bytes on the wire (fewer with compression)."""
    pages, wire = result["memory_normal_bytes"], result.get("memory_processed") or 0
    return (
        f"memory: {pages / MIB:.1f} MiB of non-zero pages went as {wire / MIB:.1f} MiB "
        f"on the wire (ratio {wire / pages:.2f})"
    )


def settle_stuck(ctx: JobContext, vm: VirtualMachine, source: Node, dest: Node) -> None:
    """After an abort libvirt has not finished rolling back (a cut link).

    The source keeps its job and the domain's state-change lock: calls that need it
    (the inventory's) block for 30 s, so only lock-free ones are made there. The
    destination is cleaned now if the manager reaches it and the source still runs
    the VM in pre-copy (never while it is paused: that may be post-copy, where the
    destination's copy is the VM); the reconciler settles the rest later.
    """
    uuid = str(vm.uuid)
    ctx.log(
        f"after the failure: libvirt still holds {vm.name}'s migration job on {source.name}; "
        "the reconciler settles what is left once it lets go"
    )
    if not answers(dest.uri):
        ctx.log(f"{dest.name} does not answer now; the reconciler cleans it later")
        return
    try:
        if prep.domain_state(source.uri, uuid) != VMState.RUNNING:
            return
        if prep.destroy_unfinished_incoming(dest.uri, uuid):
            ctx.log(f"stopped the unfinished incoming copy on {dest.name}")
        if prep.domain_state(dest.uri, uuid) is None:
            remove_created_volumes(ctx, dest)
    except HypervisorError as exc:
        ctx.log(f"could not clean {dest.name} now ({exc.message}); the reconciler retries")
        return
    inventory.refresh_node(dest)


_QEMU_DIED = ("closed the monitor", "qemu unexpectedly")


def incoming_copy_died(
    exc: HypervisorError, watch: DestinationWatch | None, vm: VirtualMachine, dest: Node
) -> bool:
    """Whether the migration failed because the destination's qemu died.

    libvirt 11 notices the destination qemu's death from the source within a second
    ("QEMU unexpectedly closed the monitor"), often before the watch's next look;
    the watch having seen it, or those words with no incoming domain left running,
    both mean the same thing to the admin.
    """
    if watch is None:
        return False
    # The job's own verdicts (a stall, the watch, an abort) were raised from the poller,
    # and rolling them back kills the incoming copy too: that is their effect, not a cause.
    if isinstance(exc, (MigrationStalled, DestinationLost)) or isinstance(
        exc.__cause__, (MigrationStalled, DestinationLost, JobAborted)
    ):
        return False
    if watch.lost:
        return True
    if not any(words in exc.message.lower() for words in _QEMU_DIED):
        return False
    try:
        return not prep.domain_is_active(dest.uri, str(vm.uuid))
    except HypervisorError:
        return False


def moved_anyway(vm: VirtualMachine, source: Node, dest: Node) -> bool:
    """True when the VM is running on the destination and gone from the source."""
    try:
        uuid = str(vm.uuid)
        return prep.domain_is_active(source.uri, uuid) is None and bool(
            prep.domain_is_active(dest.uri, uuid)
        )
    except HypervisorError:
        return False


def settle_destination(ctx: JobContext, vm: VirtualMachine, source: Node, dest: Node) -> str:
    """After a failed migration: leave the VM on exactly one node and clean the other.

    Returns what was found. An unfinished incoming copy on the destination (paused,
    transient) is destroyed once the source no longer holds a migration job, and the
    volumes the job created there are removed when the destination does not run the VM.
    Raises ``HypervisorError`` when a node cannot be asked (the reconciler retries).
    """
    uuid = str(vm.uuid)
    on_source = prep.domain_state(source.uri, uuid)
    on_dest = prep.domain_state(dest.uri, uuid)
    found = (
        f"on {source.name}: {on_source.label if on_source else 'absent'}; "
        f"on {dest.name}: {on_dest.label if on_dest else 'absent'}"
    )
    if on_source in VMState.active() and on_dest is not None:
        if prep.has_active_job(source.uri, uuid):
            ctx.log(f"{found}; libvirt still holds the source's job: cleanup waits")
            return found
        if prep.destroy_unfinished_incoming(dest.uri, uuid):
            ctx.log(f"{found}; stopped the unfinished incoming copy on {dest.name}")
            on_dest = None
    if on_dest is None:
        remove_created_volumes(ctx, dest)
    return found


def after_failure(ctx: JobContext, vm: VirtualMachine, source: Node, dest: Node) -> None:
    """Make sure the VM is where it was, remove what we created, and say so."""
    try:
        ctx.log(f"after the failure: {settle_destination(ctx, vm, source, dest)}")
    except HypervisorError as exc:
        ctx.log(
            f"after the failure: could not inspect the nodes: {exc.message}; "
            "the reconciler checks them again and removes what the job created"
        )
    for node in (source, dest):
        inventory.refresh_node(node)


def after_success(
    ctx: JobContext,
    vm: VirtualMachine,
    *,
    source: Node,
    dest: Node,
    outcome: hv.MigrationOutcome,
    plans: list[prep.DestinationVolume],
    options: MigrationOptions,
) -> None:
    ctx.progress(96, phase="finishing")
    if prep.resume_if_paused(dest.uri, str(vm.uuid)):
        ctx.log(f"resumed {vm.name} on {dest.name} (it was paused to finish)")
    completed = hv.completed_stats(dest.uri, str(vm.uuid))
    if not options.keep_source_disks:
        for plan in plans:
            if prep.delete_path(source.uri, plan.disk.path):
                ctx.log(f"removed the source copy {plan.disk.path} on {source.name}")
            else:
                ctx.log(f"kept {plan.disk.path} on {source.name}: no storage pool holds it")
    for node in (source, dest):
        inventory.refresh_node(node)
    last = outcome.last
    result = {
        "phase": "completed",
        "wall_seconds": round(outcome.wall_seconds, 2),
        "downtime_ms": completed.downtime_ms if completed else None,
        "data_processed": (completed or last).data_processed if (completed or last) else 0,
        "disk_processed": last.disk_processed if last else 0,
        "memory_processed": (completed or last).memory_processed if (completed or last) else 0,
        "actions": outcome.actions,
        **compression_result(completed or last),
    }
    ctx.progress(100, **result)
    if result.get("memory_normal_bytes"):
        ctx.log(compression_summary(result))
    ctx.log(
        f"migrated {vm.name} from {source.name} to {dest.name} in "
        f"{outcome.wall_seconds:.1f} s, downtime "
        f"{result['downtime_ms'] if result['downtime_ms'] is not None else '?'} ms, "
        f"{(result['data_processed'] or 0) // MIB} MiB moved"
    )
