"""What a node is: versions, virtualization support, memory and storage pools."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field

import libvirt

from nodes.features import features_for
from nodes.hypervisor.connection import connection_for
from nodes.hypervisor.networks import network_facts
from nodes.hypervisor.storage import storage_facts


@dataclass(frozen=True)
class PoolInfo:
    name: str
    active: bool
    capacity_bytes: int
    allocation_bytes: int
    available_bytes: int
    path: str


@dataclass(frozen=True)
class HostReport:
    hostname: str
    driver: str
    libvirt_version: str
    hypervisor_version: str
    cpus: int
    memory_total_mib: int
    memory_free_mib: int
    kvm_usable: bool
    kvm_detail: str
    pools: list[PoolInfo] = field(default_factory=list)
    # QEMU's own version ("" when the driver is not QEMU), and the migration
    # features these versions offer (keys of nodes.features.FEATURES).
    qemu_version: str = ""
    migration_features: list[str] = field(default_factory=list)

    @property
    def virt_type(self) -> str:
        """The domain type guests should use: kvm where it works, else qemu (TCG)."""
        return "kvm" if self.kvm_usable else "qemu"


def _version(number: int) -> str:
    major, rest = divmod(number, 1_000_000)
    minor, micro = divmod(rest, 1000)
    return f"{major}.{minor}.{micro}"


def _kvm_support(conn: libvirt.virConnect) -> tuple[bool, str]:
    """Ask libvirt whether the kvm domain type is offered for this host's arch."""
    try:
        caps = ET.fromstring(conn.getCapabilities())
    except libvirt.libvirtError as exc:
        return False, f"capabilities unavailable: {exc.get_error_message()}"
    arch = caps.findtext("./host/cpu/arch") or "x86_64"
    for guest in caps.findall("./guest"):
        guest_arch = guest.find("arch")
        if guest_arch is None or guest_arch.get("name") != arch:
            continue
        if guest_arch.find("./domain[@type='kvm']") is not None:
            return True, f"kvm domain type offered for {arch}"
    return False, f"no kvm domain type for {arch}: guests must run under TCG (type='qemu')"


def _pool_path(pool: libvirt.virStoragePool) -> str:
    try:
        return ET.fromstring(pool.XMLDesc(0)).findtext("./target/path") or ""
    except libvirt.libvirtError:
        return ""


def probe_host(uri: str) -> HostReport:
    with connection_for(uri) as conn:
        info = conn.getInfo()
        driver = conn.getType()
        try:
            hypervisor_version = _version(conn.getVersion())
        except libvirt.libvirtError:
            hypervisor_version = "unknown"
        libvirt_version = _version(conn.getLibVersion())
        qemu_version = hypervisor_version if driver == "QEMU" else ""
        kvm_usable, kvm_detail = _kvm_support(conn)
        pools = []
        for pool in conn.listAllStoragePools(0):
            active = pool.isActive() == 1
            _state, capacity, allocation, available = pool.info() if active else (0, 0, 0, 0)
            pools.append(
                PoolInfo(
                    name=pool.name(),
                    active=active,
                    capacity_bytes=capacity,
                    allocation_bytes=allocation,
                    available_bytes=available,
                    path=_pool_path(pool),
                )
            )
        return HostReport(
            hostname=conn.getHostname(),
            driver=driver,
            libvirt_version=libvirt_version,
            hypervisor_version=f"{driver} {hypervisor_version}",
            cpus=info[2],
            memory_total_mib=info[1],
            memory_free_mib=conn.getFreeMemory() // (1024 * 1024),
            kvm_usable=kvm_usable,
            kvm_detail=kvm_detail,
            pools=sorted(pools, key=lambda p: p.name),
            qemu_version=qemu_version,
            migration_features=features_for(libvirt_version, qemu_version),
        )


def collect_facts(uri: str) -> dict[str, object]:
    """The node's facts as JSON-safe data, stored on the Node row for forms to use.

    Besides the host report: each pool's volumes, the ISO images, libvirt
    networks and host bridges (bounded lists; see storage.py and networks.py).
    """
    report = probe_host(uri)
    with connection_for(uri) as conn:
        extra = {**storage_facts(conn), **network_facts(conn)}
    return {**asdict(report), "virt_type": report.virt_type, **extra}


@dataclass(frozen=True)
class NodeVersions:
    """A node's libvirt and QEMU versions now, and the migration features they offer."""

    libvirt_version: str
    qemu_version: str
    migration_features: list[str]


def node_versions(uri: str) -> NodeVersions:
    """Read the versions afresh (a migration decides its features from these, not from
    facts that may predate a node's upgrade)."""
    with connection_for(uri) as conn:
        libvirt_version = _version(conn.getLibVersion())
        qemu_version = ""
        if conn.getType() == "QEMU":
            try:
                qemu_version = _version(conn.getVersion())
            except libvirt.libvirtError:
                qemu_version = ""
    return NodeVersions(libvirt_version, qemu_version, features_for(libvirt_version, qemu_version))
