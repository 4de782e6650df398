"""What a migration must know and prepare on both nodes before it starts.

Non-shared storage: every disk of the VM needs a place on the destination, a
pool whose target directory holds the same path, where the job pre-creates a
volume of the same size and format through libvirt's storage API (never by
touching files over ssh). A volume that already exists there is refused, not
reused: a stale file from a failed run would be silently overwritten.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import libvirt

from nodes.hypervisor.connection import connection_for
from nodes.hypervisor.errors import HypervisorError
from nodes.hypervisor.networks import DEFAULT_MTU, link_mtus
from nodes.hypervisor.states import VMState, state_from_libvirt
from nodes.hypervisor.xml import parse_domain_devices


@dataclass(frozen=True)
class SourceDisk:
    target: str
    path: str
    format: str
    capacity_bytes: int


@dataclass(frozen=True)
class DestinationVolume:
    """Where one source disk will live on the destination."""

    disk: SourceDisk
    pool: str
    pool_available_bytes: int
    exists: bool

    @property
    def name(self) -> str:
        return os.path.basename(self.disk.path)


def _domain(conn: libvirt.virConnect, uuid: str) -> libvirt.virDomain:
    return conn.lookupByUUIDString(uuid)


def source_disks(uri: str, uuid: str) -> list[SourceDisk]:
    """The VM's writable file disks with their sizes, as the source sees them now."""
    with connection_for(uri) as conn:
        dom = _domain(conn, uuid)
        devices = parse_domain_devices(dom.XMLDesc(0))
        disks = []
        for disk in devices.disks:
            if disk.device != "disk" or disk.readonly or disk.shareable:
                continue
            if disk.source_type != "file" or not disk.path:
                raise HypervisorError(
                    f"disk {disk.target} is a {disk.source_type} disk; only file-backed "
                    "disks can be copied by a migration without shared storage"
                )
            try:
                capacity = dom.blockInfo(disk.path)[0]
            except libvirt.libvirtError:
                capacity = conn.storageVolLookupByPath(disk.path).info()[1]
            disks.append(SourceDisk(disk.target, disk.path, disk.format or "raw", capacity))
        return disks


def plan_destination(uri: str, disks: list[SourceDisk]) -> list[DestinationVolume]:
    """Match each disk to an active destination pool whose directory holds its path."""
    with connection_for(uri) as conn:
        pools: dict[str, libvirt.virStoragePool] = {}
        for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            path = ET.fromstring(pool.XMLDesc(0)).findtext("./target/path") or ""
            if path:
                pools[os.path.normpath(path)] = pool
        plans = []
        for disk in disks:
            directory = os.path.normpath(os.path.dirname(disk.path))
            pool = pools.get(directory)
            if pool is None:
                raise HypervisorError(
                    f"the destination has no active storage pool for {directory} "
                    f"(disk {disk.target}); define a dir pool with that target path there"
                )
            pool.refresh(0)
            name = os.path.basename(disk.path)
            try:
                pool.storageVolLookupByName(name)
                exists = True
            except libvirt.libvirtError:
                exists = False
            plans.append(DestinationVolume(disk, pool.name(), pool.info()[3], exists))
        return plans


def find_domain(uri: str, name: str, uuid: str) -> str:
    """A domain on the node with that name or UUID: its description, or ''."""
    with connection_for(uri) as conn:
        for lookup, key in ((conn.lookupByUUIDString, uuid), (conn.lookupByName, name)):
            try:
                dom = lookup(key)
            except libvirt.libvirtError:
                continue
            return f"{dom.name()} ({dom.UUIDString()})"
    return ""


def free_memory_mib(uri: str) -> int:
    with connection_for(uri) as conn:
        return conn.getFreeMemory() // (1024 * 1024)


def domain_xml(uri: str, uuid: str) -> str:
    with connection_for(uri) as conn:
        return _domain(conn, uuid).XMLDesc(0)


def cpu_compatible(dest_uri: str, domain_xml_text: str) -> tuple[bool, str]:
    """Whether the destination can run the domain's CPU model.

    A domain without a ``<cpu>`` model gets the hypervisor's default and is
    compatible; otherwise the destination compares it against what it can offer.
    """
    root = ET.fromstring(domain_xml_text)
    cpu = root.find("cpu")
    if cpu is None or (cpu.find("model") is None and cpu.get("mode") in (None, "custom")):
        return True, "no CPU model requested: the hypervisor default is used"
    if cpu.get("mode") == "host-passthrough":
        return True, "host-passthrough: the destination's CPU must match the source's exactly"
    arch = root.find("./os/type")
    with connection_for(dest_uri) as conn:
        try:
            result = conn.compareHypervisorCPU(
                None,
                arch.get("arch") if arch is not None else None,
                arch.get("machine") if arch is not None else None,
                root.get("type"),
                ET.tostring(cpu, encoding="unicode"),
                0,
            )
        except libvirt.libvirtError as exc:
            return False, f"the destination could not compare the CPU: {exc}"
    if result == libvirt.VIR_CPU_COMPARE_INCOMPATIBLE:
        return False, "the destination's CPU lacks features the VM's CPU model needs"
    return True, "CPU model supported by the destination"


@dataclass(frozen=True)
class NicMtuMismatch:
    """A VM NIC whose frames are larger than its network's or bridge's MTU on a node."""

    mac: str
    kind: str  # network or bridge
    link: str
    nic_mtu: int  # the NIC's <mtu>, or 1500 when it has none
    nic_mtu_set: bool
    link_mtu: int


def nic_mtu_mismatches(dest_uri: str, domain_xml_text: str) -> list[NicMtuMismatch]:
    """The domain's NICs that would send frames larger than the destination's link takes.

    A bridge carrying a bridged VPN overlay runs at the tunnel's MTU (1400 by
    default); a guest NIC without ``<mtu>`` sends 1500-byte frames, and the
    bridge drops what does not fit. Links whose MTU libvirt does not tell, and
    links the destination does not have, are not judged here.
    """
    nics = [
        nic
        for nic in parse_domain_devices(domain_xml_text).nics
        if nic.type in ("network", "bridge") and nic.source
    ]
    if not nics:
        return []
    mtus = link_mtus(dest_uri)
    found = []
    for nic in nics:
        link_mtu = mtus.of(nic.type, nic.source)
        nic_mtu = nic.mtu or DEFAULT_MTU
        if link_mtu is not None and link_mtu < nic_mtu:
            found.append(
                NicMtuMismatch(
                    nic.mac, nic.type, nic.source, nic_mtu, nic.mtu is not None, link_mtu
                )
            )
    return found


def resume_if_paused(uri: str, uuid: str) -> bool:
    with connection_for(uri) as conn:
        dom = _domain(conn, uuid)
        if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()
            return True
    return False


def domain_is_active(uri: str, uuid: str) -> bool | None:
    """True/False when the node has the domain, None when it does not."""
    with connection_for(uri) as conn:
        try:
            return _domain(conn, uuid).isActive() == 1
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise


def delete_path(uri: str, path: str) -> bool:
    """Delete the volume at ``path`` through the storage API; False if no pool has it."""
    with connection_for(uri) as conn:
        try:
            vol = conn.storageVolLookupByPath(path)
        except libvirt.libvirtError:
            return False
        vol.delete(0)
        return True


def domain_state(uri: str, uuid: str) -> VMState | None:
    """The domain's named state on the node, or None when the node does not have it."""
    with connection_for(uri) as conn:
        try:
            return state_from_libvirt(_domain(conn, uuid).state()[0])
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise


def has_active_job(uri: str, uuid: str) -> bool:
    """Whether libvirt still runs a job (e.g. a migration being cancelled) on the domain."""
    with connection_for(uri) as conn:
        try:
            stats = _domain(conn, uuid).jobStats(0)
        except libvirt.libvirtError:
            return False
    return stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE


def abort_outgoing_migration(uri: str, uuid: str) -> bool:
    """Abort the domain's outgoing migration on this (source) node, if one runs.

    Returns whether libvirt accepted the abort. A migration already in post-copy
    cannot be aborted (libvirt refuses): it is left to finish.
    """
    with connection_for(uri) as conn:
        try:
            dom = _domain(conn, uuid)
            stats = dom.jobStats(0)
        except libvirt.libvirtError:
            return False
        running = stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE
        outgoing = stats.get("operation") == libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT
        if not (running and outgoing):
            return False
        try:
            dom.abortJob()
        except libvirt.libvirtError:
            return False
        return True


def destroy_unfinished_incoming(uri: str, uuid: str) -> bool:
    """Stop a destination's leftover incoming copy of a migration that failed.

    Only a transient domain is touched: an incoming migration defines the domain on
    the destination at the very end, so a persistent one there is a real VM.
    """
    with connection_for(uri) as conn:
        try:
            dom = _domain(conn, uuid)
        except libvirt.libvirtError:
            return False
        if dom.isPersistent() or not dom.isActive():
            return False
        dom.destroy()
        return True
