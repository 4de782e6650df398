"""Creating a VM: validation against what the node offers, the job, and its handler.

``submit_create`` checks a ``CreateVMForm`` (``vms.forms.create``: the input rules
against the database, the node's stored facts and the inventory) and queues a job;
nothing reaches a hypervisor in the caller's request. ``run_create`` runs in a
worker: it repeats the checks against the live node, runs virt-install, records the
VM with its (sealed) VNC password, and on failure removes what it created and says so.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from jobs.context import JobContext
from jobs.errors import JobConflict
from jobs.models import Job
from jobs.runner import submit
from kvmmgr import audit
from kvmmgr.access import Actor, Permission
from nodes.hypervisor import HypervisorError, probe_host, virtinstall
from nodes.hypervisor import networks as hv_networks
from nodes.hypervisor import storage as hv_storage
from nodes.hypervisor.lifecycle import set_vnc_password
from nodes.hypervisor.states import VMState
from nodes.hypervisor.virtinstall import MEDIA_IMPORT, MEDIA_ISO
from nodes.models import Node
from vms import vncsecret
from vms.choices import JobKind
from vms.models import VirtualMachine
from vms.services.inventory import refresh_node

if TYPE_CHECKING:
    from vms.forms.create import CreateVMForm

GIB = 1024**3
DISK_FORMATS = ("qcow2", "raw")
DEFAULT_OS_VARIANTS = ("linux2022", "generic")
VNC_PORT_MIN, VNC_PORT_MAX = 5900, 65535
# Volume names reach virt-install's comma-separated option syntax: no ',', '/' or spaces.
VOLUME_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,254}$")


@dataclass
class NodeOptions:
    """What the create form may offer for one node, from its stored facts."""

    pools: list[dict[str, Any]] = field(default_factory=list)
    isos: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    bridges: list[str] = field(default_factory=list)
    #: MTU per network / bridge where the facts know it (facts read before MTUs were
    #: recorded have none: the MTU is then unknown here and read live by the job).
    network_mtus: dict[str, int] = field(default_factory=dict)
    bridge_mtus: dict[str, int] = field(default_factory=dict)
    cpus: int = 0
    memory_free_mib: int = 0

    @classmethod
    def of(cls, node: Node) -> NodeOptions:
        facts = node.facts or {}
        volumes_by_pool = facts.get("volumes") or {}
        return cls(
            pools=[p for p in facts.get("pools", []) if p.get("active")],
            isos=list(facts.get("isos", [])),
            volumes=[
                v
                for vols in volumes_by_pool.values()
                for v in vols
                if not str(v.get("name", "")).lower().endswith(hv_storage.ISO_SUFFIX)
                and v.get("format") != "iso"
            ],
            networks=[n["name"] for n in facts.get("networks", []) if n.get("active")],
            bridges=list(facts.get("bridges", [])),
            network_mtus={
                n["name"]: n["mtu"]
                for n in facts.get("networks", [])
                if isinstance(n.get("mtu"), int)
            },
            bridge_mtus={
                name: mtu
                for name, mtu in (facts.get("bridge_mtus") or {}).items()
                if isinstance(mtu, int)
            },
            cpus=int(facts.get("cpus") or 0),
            memory_free_mib=_memory_limit(
                facts.get("memory_free_mib"), facts.get("memory_total_mib")
            ),
        )

    def nic_mtu(self, network: str = "", bridge: str = "") -> int | None:
        """The MTU a new NIC on that network or bridge gets (None: the default 1500)."""
        mtus, name = (self.network_mtus, network) if network else (self.bridge_mtus, bridge)
        return nic_mtu_for(mtus.get(name))

    def pool(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.pools if p.get("name") == name), None)

    def pool_has(self, pool: str, volume: str) -> bool:
        facts_vols = [*self.volumes, *self.isos]
        return any(v["pool"] == pool and v["name"] == volume for v in facts_vols)


def nic_mtu_for(link_mtu: int | None) -> int | None:
    """A new NIC's MTU on a link with ``link_mtu``: set only when the link's is lower.

    A bridge carrying a bridged VPN overlay has the tunnel's MTU (1400 by default);
    a guest sending 1500-byte frames there has its large packets dropped. With
    ``<mtu size=…/>`` on a virtio NIC the guest's driver takes that MTU itself.
    """
    if link_mtu is not None and 0 < link_mtu < hv_networks.DEFAULT_MTU:
        return link_mtu
    return None


def _memory_limit(free_mib: Any, total_mib: Any) -> int:
    """Free memory; a driver that reports none at all (libvirt's test driver) gets its total."""
    return int(free_mib or 0) or int(total_mib or 0)


def default_os_variant() -> str:
    try:
        variants = virtinstall.os_variants()
    except HypervisorError:
        return DEFAULT_OS_VARIANTS[-1]
    return next((v for v in DEFAULT_OS_VARIANTS if v in variants), DEFAULT_OS_VARIANTS[-1])


def node_problem(node: Node) -> str | None:
    """Why no VM can be created on ``node`` now (None: it can)."""
    if not node.enabled:
        return f"Node {node.name} is disabled."
    if node.in_maintenance:
        return (
            f"Node {node.name} is in maintenance"
            + (f" ({node.maintenance_reason})" if node.maintenance_reason else "")
            + f": it takes no new VMs (manage.py maintenance {node.name} off ends it)."
        )
    if not node.is_online:
        return (
            f"Node {node.name} is {node.status_label}"
            + (f" ({node.last_error})" if node.last_error else "")
            + "; create VMs on a node that answers."
        )
    if not node.facts or "cpus" not in node.facts:
        return f"Node {node.name}'s resources have not been read yet; refresh it."
    return None


def submit_create(form: CreateVMForm, *, actor: Actor) -> Job:
    """Validate ``form`` (bound to one node) and queue a create job.

    Raises ``ValidationError`` per field; nothing is saved then. Validation runs
    inside the audit record, so a refused create is recorded with its reasons.
    """
    node = form.node
    with audit.action(
        actor,
        Permission.VM_CREATE,
        "vm.create",
        target=str(form.data.get("name", "")),
        params={"node": node.name},
    ) as done:
        params = form.job_params()
        done.params.update(params)
        try:
            done.job = submit(
                JobKind.CREATE,
                target_name=params["name"],
                requested_by=actor.name,
                node=node,
                params=params,
            )
        except JobConflict as exc:
            raise ValidationError({"name": [str(exc)]}, code="job_conflict") from exc
        return done.job


# --- the job handler (runs in a worker) ---------------------------------------------


def vnc_listen_address(node: Node) -> str:
    """Where a new VM's VNC server listens on its node: the node's loopback.

    Never the host of the manager's URI: for a node reached through a port forward,
    1:1 NAT or a name that resolves elsewhere, that is not an address of the node
    (qemu then fails "Cannot assign requested address"). Never 0.0.0.0 either: the
    console is reached through the manager's ssh path to the node.
    """
    return "127.0.0.1"


def _live_check(node: Node, p: dict[str, Any]) -> str:
    """Repeat the checks against the node itself; returns the ISO's path (if any)."""
    report = probe_host(node.uri)
    problems = []
    if virtinstall.domain_exists(node.uri, name=p["name"]):
        problems.append(f"the node already has a domain named {p['name']!r}")
    if p["vcpus"] > report.cpus:
        problems.append(f"{p['vcpus']} vCPUs asked, the node has {report.cpus}")
    free_mib = _memory_limit(report.memory_free_mib, report.memory_total_mib)
    if p["memory_mib"] > free_mib:
        problems.append(f"{p['memory_mib']} MiB asked, {free_mib} MiB free now")
    if p["media"] == MEDIA_IMPORT:
        if hv_storage.find_volume(node.uri, p["import_pool"], p["import_volume"]) is None:
            problems.append(f"volume {p['import_pool']}/{p['import_volume']} is gone")
    else:
        available = hv_storage.pool_available_bytes(node.uri, p["pool"])
        if p["disk_gib"] * GIB > available:
            problems.append(f"pool {p['pool']} has {available // GIB} GiB free now")
        volume = f"{p['name']}.{virtinstall.VOLUME_EXTENSIONS[p['disk_format']]}"
        if hv_storage.find_volume(node.uri, p["pool"], volume) is not None:
            problems.append(f"pool {p['pool']} already has a volume {volume!r}")
    iso_path = ""
    if p["media"] == MEDIA_ISO:
        iso = hv_storage.find_volume(node.uri, p["iso_pool"], p["iso_volume"])
        if iso is None:
            problems.append(f"ISO {p['iso_pool']}/{p['iso_volume']} is gone")
        else:
            iso_path = iso.path
    if p["network"] and not hv_networks.has_active_network(node.uri, p["network"]):
        problems.append(f"network {p['network']!r} is not active")
    if p["bridge"] and not hv_networks.has_bridge(node.uri, p["bridge"]):
        problems.append(f"bridge {p['bridge']!r} is not there")
    if problems:
        raise ValidationError(
            f"Node {node.name} changed since the form was filled: "
            + "; ".join(problems)
            + ". Nothing was created."
        )
    return iso_path


def _live_nic_mtu(ctx: JobContext, node: Node, p: dict[str, Any]) -> int | None:
    """The new NIC's MTU from the node's network or bridge as it is now; logged."""
    if not (p["network"] or p["bridge"]):
        return None
    kind, name = ("network", p["network"]) if p["network"] else ("bridge", p["bridge"])
    link_mtu = hv_networks.link_mtus(node.uri).of(kind, name)
    mtu = nic_mtu_for(link_mtu)
    if mtu is not None:
        ctx.log(
            f"{kind} {name} on {node.name} has MTU {link_mtu}: the NIC gets mtu.size={mtu} "
            "(a virtio guest takes it as its own MTU, so it never sends larger frames)"
        )
    elif link_mtu is None:
        ctx.log(f"the MTU of {kind} {name} on {node.name} is unknown; the NIC keeps the default")
    return mtu


def _spec(
    node: Node, p: dict[str, Any], iso_path: str, nic_mtu: int | None = None
) -> virtinstall.CreateSpec:
    return virtinstall.CreateSpec(
        name=p["name"],
        uuid=str(uuidlib.uuid4()),
        virt_type=virtinstall.virt_type_for(node.uri, node.effective_virt_type),
        vcpus=p["vcpus"],
        memory_mib=p["memory_mib"],
        os_variant=p["os_variant"],
        media=p["media"],
        disk_pool=p["pool"],
        disk_gib=p["disk_gib"],
        disk_format=p.get("disk_format") or "qcow2",
        iso_path=iso_path,
        import_volume=f"{p['import_pool']}/{p['import_volume']}"
        if p["media"] == MEDIA_IMPORT
        else "",
        network=p["network"],
        bridge=p["bridge"],
        nic_mtu=nic_mtu,
        vnc_listen=vnc_listen_address(node),
        vnc_port=p["vnc_port"],
        vnc_password=vncsecret.generate_password(),
        vnc_start_password=vncsecret.generate_password(),
    )


def _clean_up(ctx: JobContext, node: Node, spec: virtinstall.CreateSpec) -> str:
    """Remove the domain and new volume a failed virt-install may have left; say what happened.

    The new volume's name was checked to be free just before virt-install ran,
    so a volume of that name now is this job's own.
    """
    removed: list[str] = []
    left: list[str] = []
    try:
        if virtinstall.remove_domain(node.uri, spec.uuid):
            removed.append(f"domain {spec.name}")
    except HypervisorError as exc:
        left.append(f"domain {spec.name} (UUID {spec.uuid}): {exc.message}")
    if spec.new_volume_name:
        ref = f"{spec.disk_pool}/{spec.new_volume_name}"
        try:
            if hv_storage.delete_volume(node.uri, spec.disk_pool, spec.new_volume_name):
                removed.append(f"volume {ref}")
        except HypervisorError as exc:
            left.append(f"volume {ref}: {exc.message}")
    if left:
        summary = (
            "Could not check or remove what may be left on the node; remove by hand: "
            + "; ".join(left)
            + "."
        )
    elif removed:
        summary = f"Removed what it had created: {', '.join(removed)}."
    else:
        summary = "Nothing was left on the node."
    ctx.log(f"cleanup: {summary}")
    return summary


def _record_vm(ctx: JobContext, node: Node, spec: virtinstall.CreateSpec) -> None:
    """Refresh the node's inventory, then store the sealed VNC password on the VM row."""
    result = refresh_node(node)
    if not result.ok:
        ctx.log(f"inventory refresh failed ({result.error}); recording the VM from the request")
    vm, _ = VirtualMachine.objects.get_or_create(
        uuid=spec.uuid,
        defaults={
            "node": node,
            "name": spec.name,
            "state": VMState.UNKNOWN,
            "vcpus": spec.vcpus,
            "memory_mib": spec.memory_mib,
            "observed_at": timezone.now(),
        },
    )
    VirtualMachine.objects.filter(pk=vm.pk).update(
        vnc_password_sealed=vncsecret.seal(spec.vnc_password)
    )
    Job.objects.filter(pk=ctx.job.pk).update(vm=vm)
    ctx.log(f"VM {spec.name} is {vm.get_state_display()} on {node.name} (UUID {spec.uuid})")


def run_create(ctx: JobContext) -> None:
    """The create job: live checks, virt-install, inventory; cleanup on failure."""
    node = ctx.job.node
    if node is None:
        raise ValidationError("The node of this job was removed. Nothing was created.")
    params = ctx.params
    ctx.progress(5, step="checking the node")
    try:
        iso_path = _live_check(node, params)
        nic_mtu = _live_nic_mtu(ctx, node, params)
    except HypervisorError as exc:
        raise HypervisorError(
            f"could not check node {node.name} before creating: {exc.message} Nothing was created.",
            retryable=exc.retryable,
            uri=exc.uri,
        ) from exc
    ctx.check_abort()
    spec = _spec(node, params, iso_path, nic_mtu)
    ctx.set_command(
        virtinstall.masked_argv(
            virtinstall.build_argv(spec, node.uri), spec.vnc_password, spec.vnc_start_password
        )
    )
    ctx.progress(20, step="virt-install")
    try:
        output = virtinstall.run_virt_install(
            spec, node.uri, timeout=settings.KVMMGR_VIRT_INSTALL_TIMEOUT
        )
    except HypervisorError as exc:
        summary = _clean_up(ctx, node, spec)
        raise HypervisorError(
            f"{exc.message.rstrip('.')}. {summary}", retryable=exc.retryable, uri=exc.uri
        ) from exc
    for line in output.splitlines():
        if line.strip():
            ctx.log(f"virt-install: {line.strip()}")
    if spec.sets_password_later:
        try:
            set_vnc_password(node.uri, spec.uuid, spec.name, spec.vnc_password)
        except HypervisorError as exc:
            summary = _clean_up(ctx, node, spec)
            raise HypervisorError(
                f"{exc.message.rstrip('.')}. {summary}", retryable=exc.retryable, uri=exc.uri
            ) from exc
        ctx.log("VNC password set through libvirt (never on a command line)")
    ctx.progress(85, step="reading the inventory")
    _record_vm(ctx, node, spec)
