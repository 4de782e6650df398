"""Where a new VM's NIC can attach on a node: libvirt networks and host bridges."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt

from nodes.hypervisor.connection import connection_for

#: Bounded facts: a host with hundreds of interfaces lists the first bridges only.
MAX_BRIDGES = 100

# Codes meaning "this libvirtd has no such driver", not "the host is broken".
_NO_DRIVER = frozenset({libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_NO_CONNECT})


def _networks(conn: libvirt.virConnect) -> list[dict[str, object]]:
    result = []
    for net in sorted(conn.listAllNetworks(0), key=lambda n: n.name()):
        try:
            bridge = net.bridgeName()
        except libvirt.libvirtError:
            bridge = ""
        result.append({"name": net.name(), "active": net.isActive() == 1, "bridge": bridge})
    return result


def _bridges(conn: libvirt.virConnect) -> list[str]:
    """Host bridges (libvirt interface API).

    Inactive ones count too: libvirt's udev backend calls a bridge without ports
    "inactive" (no carrier), yet guests attach to it fine.
    """
    names = []
    for iface in conn.listAllInterfaces(0):
        try:
            if ET.fromstring(iface.XMLDesc(0)).get("type") == "bridge":
                names.append(iface.name())
        except (libvirt.libvirtError, ET.ParseError):
            continue
    return sorted(names)[:MAX_BRIDGES]


def network_facts(conn: libvirt.virConnect) -> dict[str, object]:
    """``networks`` (name, active, bridge) and ``bridges`` (host bridges libvirt networks
    do not own)."""
    facts: dict[str, object] = {"networks": [], "bridges": []}
    try:
        facts["networks"] = _networks(conn)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in _NO_DRIVER:
            raise
    try:
        owned = {n["bridge"] for n in facts["networks"]}  # type: ignore[attr-defined]
        facts["bridges"] = [b for b in _bridges(conn) if b not in owned]
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in _NO_DRIVER:
            raise
    return facts


def has_active_network(uri: str, name: str) -> bool:
    with connection_for(uri) as conn:
        try:
            return conn.networkLookupByName(name).isActive() == 1
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                return False
            raise


def has_bridge(uri: str, name: str) -> bool:
    with connection_for(uri) as conn:
        try:
            return name in _bridges(conn)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in _NO_DRIVER:
                return False
            raise
