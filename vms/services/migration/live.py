"""A live migration job, from pre-checks to the settled result.

The order matters for "a failed migration leaves the VM running where it was":
everything that can be checked is checked before anything changes; the only
things created before libvirt starts are the destination volumes, recorded in
the job so they are removed again whatever goes wrong; libvirt's migration is
itself transactional (the source keeps running until the destination has it).
A stopped VM goes to ``cold.run_cold`` instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings

from jobs.context import JobContext
from jobs.errors import JobAborted
from jobs.models import Job
from nodes.hypervisor import HypervisorError
from nodes.hypervisor import migration as hv
from nodes.hypervisor.states import VMState
from nodes.models import Node
from nodes.services import trust
from vms.models import VirtualMachine
from vms.services.migration import features as mf
from vms.services.migration import media as migration_media
from vms.services.migration import peer_proof
from vms.services.migration.cold import run_cold
from vms.services.migration.convergence import (
    ActionKind,
    ConvergencePolicy,
    Sample,
    TimeoutPolicy,
    downtime_budget,
)
from vms.services.migration.links import explain_link_loss, recheck_peer_path
from vms.services.migration.options import options_from
from vms.services.migration.prechecks import (
    auto_converge_wanted,
    negotiate_features,
    peer_check_or_proof,
    run_prechecks,
)
from vms.services.migration.settle import (
    after_failure,
    after_success,
    incoming_copy_died,
    moved_anyway,
    settle_stuck,
)
from vms.services.migration.volumes import create_volumes
from vms.services.migration.watch import (
    DestinationLost,
    DestinationWatch,
    MigrationStalled,
    StallWatch,
    destination_lost_reason,
)


def _poller(
    ctx: JobContext, policy: ConvergencePolicy, stall: StallWatch, dest_watch: DestinationWatch
) -> Callable[[hv.MigrationStats, hv.MigrationControl], None]:
    state = {"started": False}

    def on_poll(stats: hv.MigrationStats, control: hv.MigrationControl) -> None:
        if not state["started"]:
            for action in policy.start():
                control.set_max_downtime(action.downtime_ms)
            state["started"] = True
        ctx.check_abort()
        if stats.data_processed:
            dest_watch.copying_started()
        if dest_watch.lost:
            ctx.log(f"destination lost: {dest_watch.lost}; aborting, the VM stays on the source")
            raise DestinationLost(
                f"destination lost: {dest_watch.lost}; the VM stays on the source",
                retryable=True,
            )
        stalled = stall.observe(stats.elapsed_ms / 1000, stats.data_processed)
        if stalled:
            ctx.log(f"stalled: {stalled}; aborting, the VM stays on the source")
            raise MigrationStalled(stalled, retryable=True)
        if (
            not control.postcopy_started
            and Job.objects.filter(pk=ctx.job.pk, postcopy_requested=True).exists()
        ):
            control.start_postcopy()
            ctx.log("switched to post-copy on request")
        for action in policy.observe(
            Sample(stats.elapsed_ms / 1000, stats.memory_remaining, stats.iteration)
        ):
            ctx.log(f"convergence: {action.reason}")
            if action.kind == ActionKind.SET_DOWNTIME:
                control.set_max_downtime(action.downtime_ms)
                ctx.log(f"max downtime raised to {action.downtime_ms} ms")
            elif action.kind == ActionKind.START_POSTCOPY:
                control.start_postcopy()
            elif action.kind == ActionKind.PAUSE:
                control.pause_guest()
            elif action.kind == ActionKind.ABORT:
                raise JobAborted(action.reason)
        ctx.progress(
            5 + int(stats.percent * 0.9),
            **stats.as_detail(),
            downtime_target_ms=policy.current_downtime_ms,
        )

    return on_poll


def run_migrate(ctx: JobContext) -> None:
    job = ctx.job
    vm = VirtualMachine.objects.select_related("node").get(pk=job.vm_id)
    source = vm.node
    dest = Node.objects.get(pk=job.params["destination_id"])
    options = options_from(job.params)
    live = vm.state != VMState.SHUTOFF
    if not live:
        run_cold(ctx, vm, source, dest, options)
        return
    ctx.progress(1, phase="pre-checks")
    peer_check, proof = peer_check_or_proof(ctx, source, dest, live)
    features, qemu_versions = negotiate_features(ctx, source, dest, options)
    request = hv.MigrationRequest(
        domain_uuid=str(vm.uuid),
        domain_name=vm.name,
        source_uri=source.uri,
        dest_uri=trust.peer_uri(dest),
        dest_address=dest.effective_migration_address,
        bandwidth_mib_s=options.bandwidth_mib_s,
        auto_converge=auto_converge_wanted(ctx, options, dest),
        compression=features.compression,
        postcopy=features.postcopy,
        parallel_connections=features.parallel_connections,
        sync_writes=features.sync_writes,
        display_dest_uri=trust.display_peer_uri(dest),
    )
    ctx.set_command(request.virsh_command())
    plans = run_prechecks(
        ctx, vm, source, dest, live, qemu_versions=qemu_versions, peer_check=peer_check
    )
    media = migration_media.check_media(ctx, vm, source, dest, options.media)
    if options.check_only:
        ctx.log(f"dry run: {vm.name} can migrate from {source.name} to {dest.name}")
        return
    qemu_downtime_ms, why = downtime_budget(
        options.max_downtime_ms, mf.slow_link_reason(options.bandwidth_mib_s, dest)
    )
    if why:
        ctx.log(why)
    policy = ConvergencePolicy(
        max_downtime_ms=qemu_downtime_ms,
        initial_downtime_ms=min(50, qemu_downtime_ms),
        completion_timeout_s=options.completion_timeout_s,
        timeout_policy=TimeoutPolicy(options.timeout_policy),
        postcopy_allowed=options.postcopy,
    )
    request = migration_media.eject_for_live(ctx, media, vm, request, dest)
    started = time.monotonic()
    lost = destination_lost_reason(dest.name, vm.name)
    dest_watch: DestinationWatch | None = None
    try:
        ctx.progress(3, phase="preparing destination volumes")
        create_volumes(ctx, dest, plans)
        migration_media.copy_media(ctx, media, source, dest)
        ctx.progress(5, phase="starting migration")
        with DestinationWatch(dest.uri, str(vm.uuid), lost) as dest_watch:
            outcome = hv.run_migration(
                request,
                _poller(ctx, policy, StallWatch(options.stall_timeout_s), dest_watch),
                abort_wait_seconds=settings.KVMMGR_MIGRATION_ABORT_WAIT,
            )
    except HypervisorError as exc:
        failure = _failure(ctx, exc, vm, source, dest, watch=dest_watch, proof=proof)
        if failure is exc:
            raise
        if failure is not None:
            raise failure from exc
        # libvirt reported an error at the very end, but the VM did move: say so
        # and finish the job as the success it is (disks, inventory, figures).
        ctx.log(
            f"libvirt reported: {exc.message}; but {vm.name} runs on {dest.name} and is gone "
            f"from {source.name}: the migration completed"
        )
        outcome = hv.MigrationOutcome(None, time.monotonic() - started, [])
    except BaseException:
        after_failure(ctx, vm, source, dest)
        raise
    after_success(ctx, vm, source=source, dest=dest, outcome=outcome, plans=plans, options=options)
    peer_proof.record(job, dest, peer_check.result()[0].hostname)


def _failure(
    ctx: JobContext,
    exc: HypervisorError,
    vm: VirtualMachine,
    source: Node,
    dest: Node,
    *,
    watch: DestinationWatch | None,
    proof: Job | None,
) -> HypervisorError | None:
    """After libvirt's migration failed: settle the nodes, and return the error to
    report (``exc`` itself when nothing better can be said), or None when the VM
    moved anyway (libvirt erred at the very end)."""
    if isinstance(exc, hv.MigrationStuck):
        settle_stuck(ctx, vm, source, dest)
        return explain_link_loss(exc, source, dest)
    if moved_anyway(vm, source, dest):
        return None
    incoming_died = incoming_copy_died(exc, watch, vm, dest)
    after_failure(ctx, vm, source, dest)
    if incoming_died:
        lost = destination_lost_reason(dest.name, vm.name)
        return DestinationLost(
            f"destination lost: {lost} (libvirt: {exc.message}); the VM stays on the source"
        )
    if proof is not None:
        recheck_peer_path(ctx, source, dest, exc)
    return explain_link_loss(exc, source, dest)
