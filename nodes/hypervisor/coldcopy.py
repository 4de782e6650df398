"""Cold migration's building blocks: copy a volume between nodes, move a definition.

A stopped VM has no qemu to stream its disks, so the manager copies each volume
through libvirt's storage streams (download on the source, upload on the
destination) and then defines the domain on the destination from the source's
inactive XML. The bytes flow through the manager; no ssh, no shared storage.
"""

from __future__ import annotations

from collections.abc import Callable

import libvirt

from nodes.hypervisor.connection import connection_for
from nodes.hypervisor.errors import HypervisorError

CHUNK = 4 * 1024 * 1024


def copy_volume(
    source_uri: str,
    source_path: str,
    dest_uri: str,
    dest_path: str,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Stream the volume at ``source_path`` into the existing volume at ``dest_path``.

    Returns the bytes copied. The destination volume must already exist (created
    through the storage API with the same format); its content is replaced.
    """
    with connection_for(source_uri) as src_conn, connection_for(dest_uri) as dst_conn:
        src_vol = src_conn.storageVolLookupByPath(source_path)
        dst_vol = dst_conn.storageVolLookupByPath(dest_path)
        total = src_vol.info()[2] or src_vol.info()[1]
        src_stream = src_conn.newStream(0)
        dst_stream = dst_conn.newStream(0)
        copied = 0
        try:
            src_vol.download(src_stream, 0, 0, 0)
            dst_vol.upload(dst_stream, 0, 0, 0)
            while True:
                chunk = src_stream.recv(CHUNK)
                if isinstance(chunk, int):  # -2: would block; streams here are blocking
                    raise HypervisorError(f"reading {source_path} returned {chunk}")
                if not chunk:
                    break
                sent = 0
                while sent < len(chunk):
                    sent += dst_stream.send(chunk[sent:])
                copied += len(chunk)
                if on_progress is not None:
                    on_progress(copied, total)
            src_stream.finish()
            dst_stream.finish()
        except BaseException:
            for stream in (src_stream, dst_stream):
                try:
                    stream.abort()
                except libvirt.libvirtError:
                    pass
            raise
        return copied


def inactive_xml(uri: str, uuid: str) -> str:
    """The persistent definition, with secrets (VNC password) so it moves intact."""
    with connection_for(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)


def define(uri: str, xml: str) -> str:
    """Define the domain on the node; returns its UUID."""
    with connection_for(uri) as conn:
        return conn.defineXML(xml).UUIDString()


def undefine(uri: str, uuid: str) -> None:
    """Remove a (stopped) definition, with whatever NVRAM or snapshot metadata it has."""
    with connection_for(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        flags = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
        if dom.snapshotNum(0):
            flags |= libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
        if "<nvram" in dom.XMLDesc(0):
            flags |= libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
        dom.undefineFlags(flags)
