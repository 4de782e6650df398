"""Deleting a VM's disk volumes through libvirt's storage API, never with rm over ssh.

Only volumes of a storage pool can be deleted: a disk file outside every pool
is refused, so a path can never make the manager remove an arbitrary file. A
volume still used by another domain on the node is refused too.
"""

from __future__ import annotations

from dataclasses import dataclass

import libvirt

from nodes.hypervisor.connection import connection_for
from nodes.hypervisor.errors import HypervisorError
from nodes.hypervisor.xml import DiskDevice, parse_domain_devices


@dataclass(frozen=True)
class VolumeRef:
    """A disk resolved to the pool volume behind it."""

    target: str
    pool: str
    name: str
    path: str


def _lookup(conn: libvirt.virConnect, disk: DiskDevice) -> libvirt.virStorageVol:
    if disk.pool and disk.volume:
        return conn.storagePoolLookupByName(disk.pool).storageVolLookupByName(disk.volume)
    try:
        return conn.storageVolLookupByPath(disk.path)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
            raise
    # A file created after the pool was last scanned: rescan active pools once.
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        pool.refresh(0)
    return conn.storageVolLookupByPath(disk.path)


def resolve_volumes(uri: str, vm_name: str, disks: list[DiskDevice]) -> list[VolumeRef]:
    """Map disks to pool volumes, refusing any that is not in a pool. Changes nothing."""
    refs = []
    with connection_for(uri) as conn:
        for disk in disks:
            if not disk.deletable:
                raise HypervisorError(
                    f"disk {disk.target} of VM {vm_name} is a {disk.device} "
                    f"({disk.source_type}{', read-only' if disk.readonly else ''}"
                    f"{', shared' if disk.shareable else ''}) and is never deleted with a VM.",
                    uri=uri,
                )
            try:
                vol = _lookup(conn, disk)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in (
                    libvirt.VIR_ERR_NO_STORAGE_VOL,
                    libvirt.VIR_ERR_NO_STORAGE_POOL,
                ):
                    raise
                where = disk.path or f"{disk.pool}/{disk.volume}"
                raise HypervisorError(
                    f"disk {disk.target} of VM {vm_name} ({where}) is not a volume of any "
                    "storage pool on the node, so the manager will not delete it; "
                    "remove it by hand if it should go.",
                    uri=uri,
                ) from exc
            pool = vol.storagePoolLookupByVolume()
            refs.append(
                VolumeRef(target=disk.target, pool=pool.name(), name=vol.name(), path=vol.path())
            )
    return refs


def volume_users(uri: str, volumes: list[VolumeRef], *, exclude_uuid: str) -> dict[str, list[str]]:
    """Which other domains on the node use each volume (by path or pool/volume)."""
    users: dict[str, list[str]] = {}
    with connection_for(uri) as conn:
        for dom in conn.listAllDomains(0):
            if dom.UUIDString() == exclude_uuid:
                continue
            try:
                devices = parse_domain_devices(dom.XMLDesc(0))
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    continue
                raise
            for disk in devices.disks:
                for ref in volumes:
                    if disk.path == ref.path or (disk.pool, disk.volume) == (ref.pool, ref.name):
                        users.setdefault(ref.path, []).append(dom.name())
    return users


def delete_volume(uri: str, ref: VolumeRef) -> None:
    """Delete one volume (its pool removes the file or LV)."""
    with connection_for(uri) as conn:
        try:
            vol = conn.storagePoolLookupByName(ref.pool).storageVolLookupByName(ref.name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return  # already gone: what the admin wanted
            raise
        vol.delete(0)
