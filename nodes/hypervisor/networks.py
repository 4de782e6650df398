"""Where a new VM's NIC can attach on a node: libvirt networks and host bridges.

Each comes with its MTU where libvirt tells it: a network's own ``<mtu size=…/>``,
else the MTU of the bridge it runs on; a host bridge's MTU from libvirt's
interface API (the udev backend reads ``/sys/class/net/BRIDGE/mtu``). A bridge
that carries a bridged VPN overlay has the tunnel's lower MTU (1400 by default),
and guests on it must send no larger frames.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import libvirt

from nodes.hypervisor.connection import connection_for

#: Bounded facts: a host with hundreds of interfaces lists the first bridges only.
MAX_BRIDGES = 100

# Codes meaning "this libvirtd has no such driver", not "the host is broken".
_NO_DRIVER = frozenset({libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_NO_CONNECT})

T = TypeVar("T")


#: What a NIC without ``<mtu>`` sends: the Ethernet default.
DEFAULT_MTU = 1500


def _mtu_of(element: ET.Element | None) -> int | None:
    """``<mtu size='N'/>`` under ``element`` as a number, None when absent or nonsense."""
    mtu = element.find("mtu") if element is not None else None
    try:
        size = int(mtu.get("size", "")) if mtu is not None else 0
    except ValueError:
        return None
    return size if size > 0 else None


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _networks(
    conn: libvirt.virConnect, link_mtus: dict[str, int | None]
) -> list[dict[str, object]]:
    """Networks with their MTU: the network's ``<mtu>``, else its bridge's (``link_mtus``)."""
    result = []
    for net in sorted(conn.listAllNetworks(0), key=lambda n: n.name()):
        try:
            bridge = net.bridgeName()
        except libvirt.libvirtError:
            bridge = ""
        try:
            mtu = _mtu_of(ET.fromstring(net.XMLDesc(0)))
        except (libvirt.libvirtError, ET.ParseError):
            mtu = None
        result.append(
            {
                "name": net.name(),
                "active": net.isActive() == 1,
                "bridge": bridge,
                "mtu": mtu or link_mtus.get(bridge),
            }
        )
    return result


def _interfaces(conn: libvirt.virConnect) -> dict[str, tuple[str, int | None]]:
    """Host interfaces (libvirt interface API): name → (type, MTU or None)."""
    found = {}
    for iface in conn.listAllInterfaces(0):
        try:
            root = ET.fromstring(iface.XMLDesc(0))
        except (libvirt.libvirtError, ET.ParseError):
            continue
        found[iface.name()] = (root.get("type", ""), _mtu_of(root))
    return found


def _bridges(interfaces: dict[str, tuple[str, int | None]]) -> dict[str, int | None]:
    """Host bridges and their MTUs, the first ``MAX_BRIDGES`` by name.

    Inactive ones count too: libvirt's udev backend calls a bridge without ports
    "inactive" (no carrier), yet guests attach to it fine.
    """
    names = sorted(name for name, (kind, _mtu) in interfaces.items() if kind == "bridge")
    return {name: interfaces[name][1] for name in names[:MAX_BRIDGES]}


def _optional(read: Callable[[], T], default: T) -> T:
    """``read()``, or ``default`` when this libvirtd has no such driver."""
    try:
        return read()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in _NO_DRIVER:
            raise
        return default


def network_facts(conn: libvirt.virConnect) -> dict[str, object]:
    """``networks`` (name, active, bridge, mtu), ``bridges`` (names of host bridges
    libvirt networks do not own) and ``bridge_mtus`` (bridge name → MTU or None).

    ``bridges`` stays a list of names, as facts stored before MTUs were read have
    it; readers take a bridge missing from ``bridge_mtus`` as "MTU unknown".
    """
    interfaces = _optional(lambda: _interfaces(conn), {})
    link_mtus = {name: mtu for name, (_kind, mtu) in interfaces.items()}
    networks = _optional(lambda: _networks(conn, link_mtus), [])
    owned = {n["bridge"] for n in networks}
    bridges = {b: mtu for b, mtu in _bridges(interfaces).items() if b not in owned}
    return {"networks": networks, "bridges": list(bridges), "bridge_mtus": bridges}


@dataclass(frozen=True)
class LinkMtus:
    """MTUs of a node's libvirt networks and host bridges, read live (None: unknown)."""

    networks: dict[str, int | None] = field(default_factory=dict)
    bridges: dict[str, int | None] = field(default_factory=dict)

    def of(self, kind: str, name: str) -> int | None:
        """The MTU a NIC of ``kind`` (``network`` or ``bridge``) on ``name`` meets."""
        table = self.networks if kind == "network" else self.bridges if kind == "bridge" else {}
        return table.get(name)


def link_mtus(uri: str) -> LinkMtus:
    """What a NIC attached to each network or bridge of the node can send at most.

    Every host bridge is listed here, those libvirt networks own too (a NIC may
    name a network's bridge directly).
    """
    with connection_for(uri) as conn:
        interfaces = _optional(lambda: _interfaces(conn), {})
        mtus = {name: mtu for name, (_kind, mtu) in interfaces.items()}
        networks = _optional(lambda: _networks(conn, mtus), [])
    return LinkMtus(
        networks={str(n["name"]): _int_or_none(n["mtu"]) for n in networks},
        bridges={name: mtu for name, (kind, mtu) in interfaces.items() if kind == "bridge"},
    )


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
            return name in _bridges(_interfaces(conn))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in _NO_DRIVER:
                return False
            raise
