"""Media a migration does not copy: CD-ROM and floppy images, read-only and shared disks.

A migration without shared storage copies the VM's own writable disks; qemu on
the destination still opens every other source the domain names (an installer
ISO left in the CD-ROM drive, a read-only disk), and libvirt fails late with
"Cannot access storage file". So each one is looked for on the destination,
by the same path and size, before anything changes; the remedies are to take
the medium out for the move (the destination definition without its source)
or to copy the image into the destination pool first.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import libvirt

from nodes.hypervisor.connection import connection_for
from nodes.hypervisor.errors import HypervisorError
from nodes.hypervisor.xml import REMOVABLE_DEVICES, parse_domain_devices, without_media

_DEVICE_LABELS = {"cdrom": "CD-ROM", "floppy": "floppy", "disk": "disk", "lun": "LUN"}


@dataclass(frozen=True)
class Medium:
    """One source the domain names that the migration itself does not copy."""

    target: str
    device: str  # cdrom, floppy, disk, lun
    source_type: str  # file, block, volume, network
    path: str
    size_bytes: int | None  # None: the source node cannot tell (not in a pool, not readable)
    source_pool: str  # the source pool holding it ("": none; it cannot be streamed)
    readonly: bool

    @property
    def removable(self) -> bool:
        return self.device in REMOVABLE_DEVICES

    @property
    def label(self) -> str:
        kind = _DEVICE_LABELS.get(self.device, self.device)
        if self.device == "disk":
            kind = "read-only disk" if self.readonly else "shared disk"
        return f"{self.target} ({kind} {self.path})"


@dataclass(frozen=True)
class MediumOnDestination:
    """What the destination has at the medium's path, and where a copy could go."""

    medium: Medium
    dest_size_bytes: int | None  # None: no volume at that path in any destination pool
    pool: str  # the active destination pool whose directory holds the path ("": none)
    pool_available_bytes: int

    @property
    def present(self) -> bool:
        return self.dest_size_bytes is not None and self.dest_size_bytes == self.medium.size_bytes

    @property
    def volume_name(self) -> str:
        return os.path.basename(self.medium.path)


def _volume_capacity(conn: libvirt.virConnect, path: str) -> tuple[int, str] | None:
    """(capacity, pool name) of the volume at ``path``, or None when no pool holds it."""
    try:
        vol = conn.storageVolLookupByPath(path)
    except libvirt.libvirtError:
        return None
    return int(vol.info()[1]), vol.storagePoolLookupByVolume().name()


def _refresh_pools(conn: libvirt.virConnect) -> dict[str, libvirt.virStoragePool]:
    """Active pools by their target directory, refreshed so new files are seen."""
    pools = {}
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        path = ET.fromstring(pool.XMLDesc(0)).findtext("./target/path") or ""
        if not path:
            continue
        try:
            pool.refresh(0)
        except libvirt.libvirtError:
            pass  # a refresh fails while a volume is being written; the listing still helps
        pools[os.path.normpath(path)] = pool
    return pools


def source_media(uri: str, uuid: str) -> list[Medium]:
    """Every source of the domain that a migration leaves where it is.

    That is each CD-ROM and floppy with a medium, and each read-only or shared
    disk; the writable disks are the migration's own business (copied by it).
    A running domain's next-boot definition counts too: it moves along.
    """
    with connection_for(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        _refresh_pools(conn)
        xmls = [dom.XMLDesc(0)]
        if dom.isActive() and dom.isPersistent():
            xmls.append(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        disks = {}
        for text in xmls:
            for disk in parse_domain_devices(text).disks:
                disks.setdefault((disk.target, disk.path, disk.pool, disk.volume), disk)
        media = []
        for disk in disks.values():
            copied = disk.device == "disk" and not disk.readonly and not disk.shareable
            if copied:
                continue
            path = disk.path
            if disk.source_type == "volume" and disk.pool and disk.volume:
                try:
                    path = (
                        conn.storagePoolLookupByName(disk.pool)
                        .storageVolLookupByName(disk.volume)
                        .path()
                    )
                except libvirt.libvirtError:
                    path = ""
            if not path:
                continue  # an empty drive: nothing to find on the destination
            size: int | None = None
            pool = ""
            if disk.source_type != "network":
                found = _volume_capacity(conn, path)
                if found is not None:
                    size, pool = found
                else:
                    try:
                        size = int(dom.blockInfo(path)[0])
                    except libvirt.libvirtError:
                        size = None
            media.append(
                Medium(
                    target=disk.target,
                    device=disk.device,
                    source_type=disk.source_type,
                    path=path,
                    size_bytes=size,
                    source_pool=pool,
                    readonly=disk.readonly or disk.device in REMOVABLE_DEVICES,
                )
            )
        return sorted(media, key=lambda m: m.target)


def media_on_destination(uri: str, media: list[Medium]) -> list[MediumOnDestination]:
    """Look each medium up on the destination by path, through its storage pools."""
    if not media:
        return []
    with connection_for(uri) as conn:
        pools = _refresh_pools(conn)
        result = []
        for medium in media:
            found = _volume_capacity(conn, medium.path) if medium.source_type != "network" else None
            pool = pools.get(os.path.normpath(os.path.dirname(medium.path)))
            result.append(
                MediumOnDestination(
                    medium=medium,
                    dest_size_bytes=found[0] if found else None,
                    pool=pool.name() if pool is not None else "",
                    pool_available_bytes=int(pool.info()[3]) if pool is not None else 0,
                )
            )
        return result


@dataclass(frozen=True)
class EjectedDefinitions:
    """The domain's definitions for the destination, with some media taken out."""

    live: str  # VIR_MIGRATE_PARAM_DEST_XML ("" for a stopped domain)
    persistent: str  # VIR_MIGRATE_PARAM_PERSIST_XML, or the XML a cold move defines


def definitions_without_media(uri: str, uuid: str, targets: set[str]) -> EjectedDefinitions:
    """The migratable live and persistent XML of the domain without those drives' media.

    Secure XML, so a VNC password moves along; migratable, as libvirt expects of a
    destination XML. The source domain is not changed.
    """
    with connection_for(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        flags = libvirt.VIR_DOMAIN_XML_SECURE | libvirt.VIR_DOMAIN_XML_MIGRATABLE
        try:
            live = without_media(dom.XMLDesc(flags), targets) if dom.isActive() else ""
            persistent = (
                without_media(dom.XMLDesc(flags | libvirt.VIR_DOMAIN_XML_INACTIVE), targets)
                if dom.isPersistent()
                else ""
            )
        except ValueError as exc:
            raise HypervisorError(str(exc)) from exc
        return EjectedDefinitions(live=live, persistent=persistent)
