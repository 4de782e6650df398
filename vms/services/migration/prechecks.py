"""Pre-checks of a migration job: everything that can be checked before anything changes.

The libvirt checks go over the manager's pooled connections while the peer path
(an ssh session from the source to the destination) is checked in the background,
so a job pays for the slower of the two. A failed check ends the job with the VM
untouched where it was.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from django.conf import settings

from jobs.context import JobContext
from jobs.models import Job
from nodes.features import parse_version
from nodes.hypervisor import HypervisorError, node_versions
from nodes.hypervisor import migration_prep as prep
from nodes.hypervisor.xml import domain_virt_type
from nodes.models import Node
from nodes.services import trust
from vms.models import VirtualMachine
from vms.services.migration import features as mf
from vms.services.migration import peer_proof
from vms.services.migration.links import tunnel_down_reason
from vms.services.migration.options import MIB, MIGRATION_PORT, MigrationOptions, wanted


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


def run_prechecks(
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
        problem = tunnel_down_reason(source, dest)
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


def auto_converge_wanted(ctx: JobContext, options: MigrationOptions, dest: Node) -> bool:
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


def peer_check_or_proof(
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
