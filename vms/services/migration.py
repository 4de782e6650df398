"""Live (and cold) migration as a job: pre-checks, preparation, progress, cleanup.

The order matters for "a failed migration leaves the VM running where it was":
everything that can be checked is checked before anything changes; the only
things created before libvirt starts are the destination volumes, recorded in
the job so they are removed again whatever goes wrong; libvirt's migration is
itself transactional (the source keeps running until the destination has it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from kvmmgr import audit
from kvmmgr.access import Actor, Permission
from nodes.features import parse_version
from nodes.hypervisor import HypervisorError, answers, node_versions
from nodes.hypervisor import migration as hv
from nodes.hypervisor import migration_prep as prep
from nodes.hypervisor import storage as hv_storage
from nodes.hypervisor.xml import domain_virt_type
from nodes.models import Node
from nodes.services import registry, trust
from vms.choices import JobKind, JobStatus, MediaRemedy, VMState
from vms.models import Job, VirtualMachine
from vms.services import inventory, migration_media, peer_proof
from vms.services import migration_features as mf
from vms.services.convergence import (
    ActionKind,
    ConvergencePolicy,
    Sample,
    TimeoutPolicy,
    downtime_budget,
)
from vms.services.jobs import JobAborted, JobContext, submit
from vms.services.migration_features import COMPRESSION_CHOICES
from vms.services.migration_watch import (
    DestinationLost,
    DestinationWatch,
    MigrationStalled,
    StallWatch,
    destination_lost_reason,
)

log = logging.getLogger(__name__)

MIGRATION_PORT = 49152
MIB = 1024 * 1024


@dataclass(frozen=True)
class MigrationOptions:
    """Per-job options; validated by ``parse_options`` before a job exists."""

    bandwidth_mib_s: int = 0
    max_downtime_ms: int = 500
    auto_converge: bool = False
    # auto | none | zstd | zlib | xbzrle (vms.services.migration_features)
    compression: str = "auto"
    postcopy: bool = False
    completion_timeout_s: int = 300
    stall_timeout_s: int = 30
    timeout_policy: str = TimeoutPolicy.ABORT
    keep_source_disks: bool = False
    parallel_connections: int = 0
    sync_writes: bool = False
    check_only: bool = False
    # What to do with media the destination lacks (vms.choices.MediaRemedy).
    media: str = MediaRemedy.REFUSE


def _int(
    data: dict[str, Any], key: str, label: str, *, low: int, high: int, errors: dict[str, str]
) -> int:
    raw = data.get(key)
    default = getattr(MigrationOptions, key)
    if raw in (None, ""):
        return default
    try:
        value = int(str(raw).strip())
    except ValueError:
        errors[key] = f"{label} must be a whole number (got {raw!r})."
        return default
    if not low <= value <= high:
        errors[key] = f"{label} must be between {low} and {high} (got {value})."
    return value


def _bool(data: dict[str, Any], key: str) -> bool:
    raw = data.get(key, getattr(MigrationOptions, key))
    if isinstance(raw, bool):
        return raw
    return str(raw).strip().lower() in {"1", "true", "on", "yes"}


def parse_options(data: dict[str, Any]) -> MigrationOptions:
    """Validate options from a form or the CLI; raises ``ValidationError`` per field."""
    data = dict(data)
    # The older yes/no "compressed" meant libvirt's default method, XBZRLE.
    legacy = data.pop("compressed", False)
    legacy_compressed = legacy is True or str(legacy).strip().lower() in {"1", "true", "on", "yes"}
    if legacy_compressed and data.get("compression") in (None, ""):
        data["compression"] = "xbzrle"
    unknown = set(data) - {f.name for f in fields(MigrationOptions)}
    if unknown:
        raise ValidationError(f"unknown migration options: {', '.join(sorted(unknown))}")
    errors: dict[str, str] = {}
    options = MigrationOptions(
        bandwidth_mib_s=_int(
            data, "bandwidth_mib_s", "Bandwidth (MiB/s)", low=0, high=100_000, errors=errors
        ),
        max_downtime_ms=_int(
            data, "max_downtime_ms", "Max downtime (ms)", low=10, high=60_000, errors=errors
        ),
        auto_converge=_bool(data, "auto_converge"),
        compression=str(data.get("compression") or MigrationOptions.compression).strip().lower(),
        postcopy=_bool(data, "postcopy"),
        completion_timeout_s=_int(
            data,
            "completion_timeout_s",
            "Completion timeout (s)",
            low=10,
            high=86_400,
            errors=errors,
        ),
        stall_timeout_s=_int(
            data, "stall_timeout_s", "Stall timeout (s)", low=5, high=3_600, errors=errors
        ),
        timeout_policy=str(data.get("timeout_policy") or TimeoutPolicy.ABORT),
        keep_source_disks=_bool(data, "keep_source_disks"),
        parallel_connections=_int(
            data, "parallel_connections", "Parallel connections", low=0, high=16, errors=errors
        ),
        sync_writes=_bool(data, "sync_writes"),
        check_only=_bool(data, "check_only"),
        media=str(data.get("media") or MediaRemedy.REFUSE).strip().lower(),
    )
    if options.media not in MediaRemedy.values:
        errors["media"] = (
            f"Media must be one of {', '.join(v for v in MediaRemedy.values if v)} "
            f"(got {options.media!r})."
        )
    if options.timeout_policy not in TimeoutPolicy.__members__.values():
        errors["timeout_policy"] = (
            f"Timeout policy must be one of {', '.join(p.value for p in TimeoutPolicy)}."
        )
    elif options.timeout_policy == TimeoutPolicy.POSTCOPY and not options.postcopy:
        errors["timeout_policy"] = "Switching to post-copy on timeout needs post-copy enabled."
    if options.compression not in COMPRESSION_CHOICES:
        errors["compression"] = (
            f"Compression must be one of {', '.join(COMPRESSION_CHOICES)} "
            f"(got {options.compression!r})."
        )
    elif options.postcopy and options.compression not in ("auto", "none"):
        errors["compression"] = "libvirt refuses compression together with post-copy."
    elif options.compression == "xbzrle" and options.parallel_connections:
        errors["compression"] = (
            "Parallel connections carry only zstd or zlib compression, not xbzrle."
        )
    if options.max_downtime_ms < 50 and "max_downtime_ms" not in errors:
        errors["max_downtime_ms"] = "Max downtime below 50 ms never converges; use 50 or more."
    if errors:
        raise ValidationError(errors)
    return options


def validate_request(vm: VirtualMachine, dest: Node | None) -> None:
    """What can be refused from the database alone, before a job exists."""
    if dest is None:
        raise ValidationError({"destination": "Unknown destination node."})
    if vm.vanished_at is not None:
        raise ValidationError(f"{vm.name} is no longer on {vm.node.name}.")
    if dest.pk == vm.node_id:
        raise ValidationError({"destination": f"{vm.name} is already on {dest.name}."})
    registry.refuse_if_in_maintenance(dest, "destination")
    for node, role in ((vm.node, "source"), (dest, "destination")):
        if not node.enabled:
            raise ValidationError(f"The {role} node {node.name} is disabled.")
        if not node.is_online:
            reason = f": {node.last_error}" if node.last_error else ""
            raise ValidationError(f"The {role} node {node.name} is offline{reason}.")
        if not node.uri.startswith("qemu+ssh://"):
            raise ValidationError(
                f"The {role} node {node.name} is not a qemu+ssh node; migration runs between "
                "hosts reached over ssh."
            )
    if vm.state not in (VMState.RUNNING, VMState.PAUSED, VMState.SHUTOFF):
        raise ValidationError(f"{vm.name} is {vm.get_state_display()}; it cannot migrate now.")
    if vm.state == VMState.SHUTOFF and not vm.persistent:
        raise ValidationError(f"{vm.name} is a stopped transient domain: nothing to migrate.")


def request_migration(
    vm: VirtualMachine, dest: Node | None, options: MigrationOptions, actor: Actor
) -> Job:
    """Check the role and what the database can tell, then queue the migration job."""
    params = {"source": vm.node.name, "destination": dest.name if dest else None}
    with audit.action(
        actor, Permission.VM_MIGRATE, "vm.migrate", target=vm.name, params=params
    ) as done:
        # Judge by the rows as they are now, not by objects a caller loaded earlier.
        vm = VirtualMachine.objects.select_related("node").get(pk=vm.pk)
        dest = Node.objects.filter(pk=dest.pk).first() if dest is not None else None
        validate_request(vm, dest)
        assert dest is not None
        validate_features(vm.node, dest, options)
        done.params.update(asdict(options))
        done.job = submit(
            JobKind.MIGRATE,
            vm=vm,
            target_name=vm.name,
            requested_by=actor.name,
            params={"destination_id": dest.pk, "destination": dest.name, **asdict(options)},
        )
        return done.job


def wanted(options: MigrationOptions) -> mf.Wanted:
    return mf.Wanted(
        options.compression, options.parallel_connections, options.postcopy, options.sync_writes
    )


def validate_features(source: Node, dest: Node, options: MigrationOptions) -> None:
    """Refuse a feature asked for by name that either node lacks (from stored facts)."""
    problems = mf.missing_features(
        wanted(options), mf.Endpoint.from_facts(source), mf.Endpoint.from_facts(dest)
    )
    if not problems:
        return
    field_of = {"postcopy": "postcopy", "sync_writes": "sync_writes"}
    errors: dict[str, list[str]] = {}
    for key, message in problems.items():
        field = field_of.get(key) or (
            "parallel_connections"
            if key == "parallel" and options.compression in ("auto", "none")
            else "compression"
        )
        errors.setdefault(field, []).append(message + ".")
    raise ValidationError(errors)


# --- the job -----------------------------------------------------------------


def _options_from(params: dict[str, Any]) -> MigrationOptions:
    return MigrationOptions(
        **{f.name: params[f.name] for f in fields(MigrationOptions) if f.name in params}
    )


def check(ctx: JobContext, what: str, ok: bool, detail: str) -> None:
    """Log one pre-check; a failed one ends the job before anything changed."""
    ctx.log(f"check {what}: {'ok' if ok else 'FAILED'} - {detail}")
    if not ok:
        raise HypervisorError(f"pre-check failed: {what}: {detail}")


def check_disk_placement(
    ctx: JobContext, vm: VirtualMachine, source: Node, dest: Node
) -> list[prep.DestinationVolume]:
    """Every disk has a free name in a destination pool with room: live and cold alike."""
    clash = prep.find_domain(dest.uri, vm.name, str(vm.uuid))
    check(ctx, "no such domain on the destination", not clash, clash or f"none on {dest.name}")
    disks = prep.source_disks(source.uri, str(vm.uuid))
    plans = prep.plan_destination(dest.uri, disks) if disks else []
    needed: dict[str, int] = {}
    for plan in plans:
        check(
            ctx,
            f"no stale volume for {plan.disk.target}",
            not plan.exists,
            f"{plan.pool}/{plan.name} already exists on {dest.name}"
            if plan.exists
            else f"{plan.pool}/{plan.name} is free",
        )
        needed[plan.pool] = needed.get(plan.pool, 0) + plan.disk.capacity_bytes
    for pool, total in needed.items():
        available = next(p.pool_available_bytes for p in plans if p.pool == pool)
        check(
            ctx,
            f"space in pool {pool}",
            available >= total,
            f"{available // MIB} MiB free, the disks need {total // MIB} MiB",
        )
    return plans


def _prechecks(
    ctx: JobContext,
    vm: VirtualMachine,
    source: Node,
    dest: Node,
    live: bool,
    *,
    qemu_versions: dict[str, str] | None = None,
    peer_check: Future[tuple[trust.Preflight, list[str]]] | None = None,
) -> list[prep.DestinationVolume]:
    ctx.progress(1, phase="pre-checks")
    peer_check = peer_check or start_peer_check(source, dest, live)
    plans = check_disk_placement(ctx, vm, source, dest)
    free = prep.free_memory_mib(dest.uri)
    check(
        ctx,
        "destination memory",
        free >= vm.memory_mib,
        f"{free} MiB free on {dest.name}, the VM needs {vm.memory_mib} MiB",
    )
    domain_xml = prep.domain_xml(source.uri, str(vm.uuid))
    ok, detail = prep.cpu_compatible(dest.uri, domain_xml)
    check(ctx, "CPU compatibility", ok, detail)
    warn_nic_mtus(ctx, dest, domain_xml)
    warning = tcg_live_migration_warning(vm.name, domain_xml, qemu_versions or {}) if live else None
    if warning:
        ctx.log(warning)
    try:
        path, installed = peer_check.result()
    except HypervisorError as exc:
        problem = _tunnel_problem(source, dest)
        if not problem:
            raise
        raise HypervisorError(
            f"{problem}. {dest.name}'s peer path {dest.peer_path} runs through that tunnel: "
            f"bring it up (`manage.py vpn up NODE` or the VPN page) and migrate again; "
            f"the VM stays on {source.name}. ({exc.message})",
            retryable=True,
            uri=exc.uri,
        ) from exc
    for line in installed:
        ctx.log(f"trust: {line}")
    check(
        ctx,
        "source reaches destination libvirt",
        True,
        f"{dest.name} answers as {path.hostname}",
    )
    if live:
        address = dest.effective_migration_address
        check(
            ctx,
            "migration ports",
            bool(path.port_answers),
            f"{source.name} {'reaches' if path.port_answers else 'gets no answer from'} "
            f"{address}:{MIGRATION_PORT} (49152-49215 must be open at {dest.name}'s "
            "migration address, its setting --migration-address)",
        )
    ctx.check_abort()
    return plans


# QEMU versions from which on the lab saw no lost memory in TCG live migration.
TCG_SAFE_QEMU = (10, 0, 0)


def tcg_live_migration_warning(
    vm_name: str, domain_xml: str, qemu_versions: dict[str, str]
) -> str | None:
    """A warning (never a refusal) for a live migration of a TCG guest on QEMU older than 10.

    Under TCG, QEMU tracks the guest's dirty pages in software, and kvmmgr's lab
    saw migrated TCG guests crash on the destination after migrations that
    succeeded, also when run with plain virsh: with QEMU 7.2 (Debian 12), not with
    QEMU 10.0.2 (Debian 13, bookworm-backports). ``qemu_versions`` maps each
    node's name to its QEMU version; an unknown version counts as old. KVM guests
    are not affected; a cold migration moves a TCG guest safely.
    """
    if domain_virt_type(domain_xml) != "qemu":
        return None
    old = {
        name: version
        for name, version in qemu_versions.items()
        if (parse_version(version) or (0, 0, 0)) < TCG_SAFE_QEMU
    }
    if qemu_versions and not old:
        return None
    where = ", ".join(
        f"{name} has QEMU {version or 'of unknown version'}" for name, version in old.items()
    )
    return (
        f"WARNING: {vm_name} runs under TCG (domain type 'qemu', software emulation) and "
        f"{where or 'the QEMU versions are unknown'}: QEMU before 10 may resume a "
        "live-migrated TCG guest with memory that never reached the destination (lost "
        "memory), and the guest then crashes although the migration succeeds (seen with "
        "QEMU 7.2: 4 of 35 migrations of a guest busy writing memory, 1 of 80 of an idle "
        "one; not seen with QEMU 10.0.2: 0 of 14); upgrade both nodes to QEMU 10 (Debian 13, "
        "or bookworm-backports on Debian 12), move TCG guests by cold migration (stop, "
        "migrate, start) or run them on KVM nodes"
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


def start_peer_check(
    source: Node, dest: Node, live: bool
) -> Future[tuple[trust.Preflight, list[str]]]:
    """Check the peer path (an ssh session to the source, ~1 s) in the background.

    It is the only pre-check that costs a round trip of its own; the libvirt ones
    go over the manager's pooled connections meanwhile, so a job pays for the
    slower of the two, not their sum (a fixed cost of every job).
    """
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="peer-check")
    future = executor.submit(trust.ensure, source, dest, MIGRATION_PORT if live else None)
    executor.shutdown(wait=False)
    return future


def _auto_converge(ctx: JobContext, options: MigrationOptions, dest: Node) -> bool:
    """Auto-converge as asked, and also over a slow link (a tunnel, a low bandwidth cap).

    Measured on a 100 Mbit/s, 20 ms link (docs/benchmarks.md): a guest dirtying
    32 MiB/s never converged in 150 s with pre-copy and the downtime ramp (nor with
    raw virsh); with auto-converge it arrived in 69 s. QEMU throttles the guest's
    CPUs only while the migration does not converge, so an idle guest is untouched.
    """
    if options.auto_converge:
        return True
    if not settings.KVMMGR_AUTO_CONVERGE_SLOW_LINKS:
        return False
    slow = mf.slow_link_reason(options.bandwidth_mib_s, dest)
    if slow:
        ctx.log(
            f"auto-converge: on ({slow}): QEMU slows the guest's CPUs only if the "
            "migration does not converge"
        )
    return bool(slow)


def _peer_check(
    ctx: JobContext, source: Node, dest: Node, live: bool
) -> tuple[Future[tuple[trust.Preflight, list[str]]], Job | None]:
    """A recent proof of the peer path when there is one, else the check, started."""
    proof = peer_proof.recent(source, dest) if live else None
    if proof is None:
        return start_peer_check(source, dest, live), None
    ctx.log(peer_proof.describe(proof, dest))
    return peer_proof.as_check(proof), proof


def negotiate_features(
    ctx: JobContext, source: Node, dest: Node, options: MigrationOptions
) -> tuple[mf.FeaturePlan, dict[str, str]]:
    """Read both nodes' versions now; refuse a named feature either lacks; log the plan.

    Returns the plan and each node's QEMU version (for the TCG warning).
    """
    # Both at once: in a new process (``migratevm --wait``) this opens the job's two
    # libvirt connections, an ssh handshake each, side by side instead of in a row.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="versions") as pool:
        read = list(pool.map(node_versions, (source.uri, dest.uri)))
    src, dst = (
        mf.Endpoint(
            node.name,
            versions.libvirt_version,
            versions.qemu_version,
            frozenset(versions.migration_features),
        )
        for node, versions in zip((source, dest), read, strict=True)
    )
    ctx.log(f"node versions: {src.describe()}; {dst.describe()}")
    problems = mf.missing_features(wanted(options), src, dst)
    check(
        ctx,
        "migration features on both nodes",
        not problems,
        "; ".join(problems.values()) or "every requested feature is on both nodes",
    )
    slow = (
        mf.slow_link_reason(options.bandwidth_mib_s, dest) if options.compression == "auto" else ""
    )
    plan = mf.plan_features(wanted(options), src, dst, slow_link=slow)
    for note in plan.notes:
        ctx.log(note)
    ctx.log(f"migration features used: {plan.describe()}")
    return plan, {src.name: src.qemu_version, dst.name: dst.qemu_version}


def warn_nic_mtus(ctx: JobContext, dest: Node, domain_xml: str) -> None:
    """Warn (never refuse) when a NIC's frames are larger than its link's MTU on ``dest``.

    The migration itself works and small packets still pass; large ones vanish,
    typically on a bridge that carries a bridged VPN overlay. The fix is the NIC's
    own ``<mtu>`` (a virtio guest takes it when the VM next starts) or DHCP option 26.
    """
    try:
        mismatches = prep.nic_mtu_mismatches(dest.uri, domain_xml)
    except HypervisorError as exc:  # a warning's own failure must not stop the migration
        ctx.log(f"could not compare the VM's NIC MTUs with {dest.name}'s links: {exc.message}")
        return
    for nic in mismatches:
        ctx.log(
            f"WARNING: {nic.kind} {nic.link} on {dest.name} has MTU {nic.link_mtu}, the VM's "
            f"NIC {nic.mac} sends {nic.nic_mtu}-byte frames"
            + ("" if nic.nic_mtu_set else " (it has no <mtu>)")
            + f": large packets will be dropped; set <mtu size='{nic.link_mtu}'/> on that "
            "interface (or give the guest that MTU by DHCP option 26)"
        )


def create_volumes(ctx: JobContext, dest: Node, plans: list[prep.DestinationVolume]) -> None:
    for plan in plans:
        volume = hv_storage.create_volume(
            dest.uri, plan.pool, plan.name, plan.disk.capacity_bytes, plan.disk.format
        )
        created = ctx.job.params.setdefault("created_volumes", [])
        created.append({"pool": plan.pool, "name": plan.name, "path": volume.path})
        Job.objects.filter(pk=ctx.job.pk).update(params=ctx.job.params)
        ctx.log(
            f"created {plan.pool}/{plan.name} ({plan.disk.capacity_bytes // MIB} MiB, "
            f"{plan.disk.format}) on {dest.name}"
        )


def remove_created_volumes(ctx: JobContext, dest: Node) -> int:
    """Remove the destination volumes this job created; returns how many are left.

    Each removal is recorded in the job, so the reconciler retries only what is
    left (a cut link or a dead destination libvirtd keeps them out of reach).
    """
    left = 0
    for volume in ctx.job.params.get("created_volumes", []):
        if volume.get("removed"):
            continue
        try:
            hv_storage.delete_volume(dest.uri, volume["pool"], volume["name"])
        except HypervisorError as exc:
            ctx.log(f"cleanup: could not remove {volume['path']} on {dest.name}: {exc.message}")
            left += 1
            continue
        volume["removed"] = True
        Job.objects.filter(pk=ctx.job.pk).update(params=ctx.job.params)
        ctx.log(f"cleanup: removed {volume['path']} on {dest.name}")
    if left:
        ctx.log(f"cleanup: {left} volume(s) left on {dest.name}; the reconciler retries")
    return left


def request_postcopy(job: Job, actor: Actor) -> None:
    """Ask a running live migration that allows post-copy to switch to it now.

    Post-copy finishes a migration that pre-copy cannot: the guest runs on the
    destination at once and fetches the pages it still lacks on demand. Raises
    ``ValidationError`` when the job cannot switch.
    """
    with audit.action(
        actor, Permission.VM_MIGRATE, "vm.migrate.postcopy", target=job.target_name
    ) as done:
        done.job = job
        if job.kind != JobKind.MIGRATE or not job.params.get("postcopy"):
            raise ValidationError(
                f"Job {job.pk} is not a migration started with post-copy allowed."
            )
        if not Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
            postcopy_requested=True
        ):
            raise ValidationError(f"Job {job.pk} is not running.")


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
    options = _options_from(job.params)
    live = vm.state != VMState.SHUTOFF
    if not live:
        from vms.services.cold_migration import run_cold

        run_cold(ctx, vm, source, dest, options)
        return
    ctx.progress(1, phase="pre-checks")
    peer_check, proof = _peer_check(ctx, source, dest, live)
    features, qemu_versions = negotiate_features(ctx, source, dest, options)
    request = hv.MigrationRequest(
        domain_uuid=str(vm.uuid),
        domain_name=vm.name,
        source_uri=source.uri,
        dest_uri=trust.peer_uri(dest),
        dest_address=dest.effective_migration_address,
        bandwidth_mib_s=options.bandwidth_mib_s,
        auto_converge=_auto_converge(ctx, options, dest),
        compression=features.compression,
        postcopy=features.postcopy,
        parallel_connections=features.parallel_connections,
        sync_writes=features.sync_writes,
        display_dest_uri=trust.display_peer_uri(dest),
    )
    ctx.set_command(request.virsh_command())
    plans = _prechecks(
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
        _after_failure(ctx, vm, source, dest)
        raise
    _after_success(ctx, vm, source=source, dest=dest, outcome=outcome, plans=plans, options=options)
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
        _settle_stuck(ctx, vm, source, dest)
        return _explain_link_loss(exc, source, dest)
    if _moved_anyway(vm, source, dest):
        return None
    incoming_died = _incoming_copy_died(exc, watch, vm, dest)
    _after_failure(ctx, vm, source, dest)
    if incoming_died:
        lost = destination_lost_reason(dest.name, vm.name)
        return DestinationLost(
            f"destination lost: {lost} (libvirt: {exc.message}); the VM stays on the source"
        )
    if proof is not None:
        _recheck_peer_path(ctx, source, dest, exc)
    return _explain_link_loss(exc, source, dest)


def _settle_stuck(ctx: JobContext, vm: VirtualMachine, source: Node, dest: Node) -> None:
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


def _incoming_copy_died(
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


_LINK_LOSS = (
    "socket is closed",
    "connection reset",
    "broken pipe",
    "unreachable",
    "timed out",
    "no route",
    "keepalive",
)


def _recheck_peer_path(ctx: JobContext, source: Node, dest: Node, exc: HypervisorError) -> None:
    """After a failure with the peer check skipped: run it now, to name what broke."""
    ctx.log("the peer path was not re-checked before this migration; checking it now")
    try:
        found = trust.preflight(source, dest, MIGRATION_PORT)
    except HypervisorError as probe_exc:
        ctx.log(f"could not check the peer path: {probe_exc.message}")
        return
    if found.ok:
        return
    problem = _tunnel_problem(source, dest)
    message = trust.peer_path_failure(source, dest, found.error)
    raise HypervisorError(
        f"{problem + '. ' if problem else ''}{message}; the VM stays on {source.name}",
        retryable=True,
        uri=exc.uri,
    ) from exc


def _tunnel_problem(source: Node, dest: Node) -> str:
    """Why the tunnel carrying ``dest``'s peer path is down, or '' (no tunnel, or up)."""
    from vpn.services import tunnel_of_address, tunnel_problem

    tunnel = tunnel_of_address(dest.effective_migration_address)
    if not tunnel:
        return ""
    try:
        return tunnel_problem([source, dest])
    except Exception as probe_exc:  # a diagnosis must never hide the failure itself
        log.warning("could not read the state of tunnel %s: %s", tunnel, probe_exc)
        return ""


def _explain_link_loss(exc: HypervisorError, source: Node, dest: Node) -> HypervisorError:
    """Name the tunnel when the destination is reached through one and it is down.

    The tunnel's members are asked afresh (management interface, over their
    control path): a stopped or disconnected tunnel is reported as "VPN down"
    whatever libvirt's own words were. When the tunnel looks up but libvirt
    reported a broken connection, the message still names the tunnel.
    """
    from vpn.services import tunnel_of_address

    address = dest.effective_migration_address
    tunnel = tunnel_of_address(address)
    if not tunnel:
        return exc
    problem = _tunnel_problem(source, dest)
    if problem:
        return HypervisorError(
            f"{problem}. The migration to {dest.name} at {address} broke ({exc.message}); "
            f"the VM stays on {source.name}.",
            retryable=True,
            uri=exc.uri,
        )
    if not any(marker in exc.message.lower() for marker in _LINK_LOSS):
        return exc
    return HypervisorError(
        f"VPN down or link lost: {dest.name} is reached at {address} through tunnel "
        f"{tunnel}, and the connection broke ({exc.message}). The VM stays on the source.",
        retryable=True,
        uri=exc.uri,
    )


def _moved_anyway(vm: VirtualMachine, source: Node, dest: Node) -> bool:
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


def _after_failure(ctx: JobContext, vm: VirtualMachine, source: Node, dest: Node) -> None:
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


def _after_success(
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
