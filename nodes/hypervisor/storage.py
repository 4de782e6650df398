"""Storage pools and volumes through libvirt's storage API (never by walking folders).

Used for the node facts the create form offers (pools, their volumes, ISO
images), for the live checks a create job repeats just before virt-install,
and for removing a volume a failed create left behind.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass

import libvirt

from nodes.hypervisor.connection import connection_for
from nodes.hypervisor.errors import HypervisorError

#: Facts stay small: a pool with thousands of volumes lists the first ones only.
MAX_VOLUMES_PER_POOL = 200
ISO_SUFFIX = ".iso"


@dataclass(frozen=True)
class VolumeInfo:
    pool: str
    name: str
    path: str
    format: str
    capacity_bytes: int
    allocation_bytes: int

    @property
    def is_iso(self) -> bool:
        return self.name.lower().endswith(ISO_SUFFIX) or self.format == "iso"


def _volume_info(pool_name: str, vol: libvirt.virStorageVol) -> VolumeInfo:
    _type, capacity, allocation = vol.info()
    try:
        element = ET.fromstring(vol.XMLDesc(0)).find("./target/format")
        fmt = element.get("type", "") if element is not None else ""
    except (libvirt.libvirtError, ET.ParseError):
        fmt = ""
    return VolumeInfo(
        pool=pool_name,
        name=vol.name(),
        path=vol.path(),
        format=fmt,
        capacity_bytes=capacity,
        allocation_bytes=allocation,
    )


def _pool_volumes(pool: libvirt.virStoragePool, limit: int) -> tuple[list[VolumeInfo], bool]:
    """The pool's volumes sorted by name, at most ``limit``; and whether some were left off."""
    if pool.isActive() != 1:
        return [], False
    try:
        pool.refresh(0)
    except libvirt.libvirtError:
        # A refresh can fail while a volume is being written; the last listing still helps.
        pass
    vols = sorted(pool.listAllVolumes(0), key=lambda v: v.name())
    result = []
    for vol in vols[:limit]:
        try:
            result.append(_volume_info(pool.name(), vol))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise
    return result, len(vols) > limit


def storage_facts(conn: libvirt.virConnect) -> dict[str, object]:
    """Per-pool volume lists and the ISO images of all pools, JSON-safe and bounded."""
    volumes: dict[str, list[dict[str, object]]] = {}
    truncated: list[str] = []
    isos: list[dict[str, object]] = []
    for pool in sorted(conn.listAllStoragePools(0), key=lambda p: p.name()):
        vols, cut = _pool_volumes(pool, MAX_VOLUMES_PER_POOL)
        volumes[pool.name()] = [asdict(v) for v in vols]
        if cut:
            truncated.append(pool.name())
        isos += [asdict(v) for v in vols if v.is_iso]
    return {"volumes": volumes, "volumes_truncated": truncated, "isos": isos}


def _lookup_pool(conn: libvirt.virConnect, uri: str, pool_name: str) -> libvirt.virStoragePool:
    try:
        pool = conn.storagePoolLookupByName(pool_name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
            raise HypervisorError(f"{uri}: there is no storage pool {pool_name!r}.") from exc
        raise
    if pool.isActive() != 1:
        raise HypervisorError(f"{uri}: storage pool {pool_name!r} is not active.")
    return pool


def pool_available_bytes(uri: str, pool_name: str) -> int:
    """Free space in an active pool, read now."""
    with connection_for(uri) as conn:
        pool = _lookup_pool(conn, uri, pool_name)
        try:
            pool.refresh(0)
        except libvirt.libvirtError:
            pass
        return int(pool.info()[3])


def find_volume(uri: str, pool_name: str, name: str) -> VolumeInfo | None:
    """The volume ``name`` in ``pool_name``, or None if the pool has no such volume."""
    with connection_for(uri) as conn:
        pool = _lookup_pool(conn, uri, pool_name)
        try:
            pool.refresh(0)
        except libvirt.libvirtError:
            pass
        try:
            return _volume_info(pool_name, pool.storageVolLookupByName(name))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return None
            raise


def create_volume(uri: str, pool_name: str, name: str, size_bytes: int, fmt: str) -> VolumeInfo:
    """Create an empty volume (qcow2 or raw) in a pool."""
    root = ET.Element("volume")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "capacity", unit="bytes").text = str(int(size_bytes))
    target = ET.SubElement(root, "target")
    ET.SubElement(target, "format", type=fmt)
    with connection_for(uri) as conn:
        pool = _lookup_pool(conn, uri, pool_name)
        vol = pool.createXML(ET.tostring(root, encoding="unicode"), 0)
        return _volume_info(pool_name, vol)


def delete_volume(uri: str, pool_name: str, name: str) -> bool:
    """Delete a volume; False when it was not there."""
    with connection_for(uri) as conn:
        pool = _lookup_pool(conn, uri, pool_name)
        try:
            pool.refresh(0)
        except libvirt.libvirtError:
            pass
        try:
            vol = pool.storageVolLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return False
            raise
        vol.delete(0)
        return True
