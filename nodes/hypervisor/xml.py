"""Parsing of libvirt domain XML: the one place that knows its shape."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

_UNIT_TO_KIB = {
    "b": 1 / 1024,
    "bytes": 1 / 1024,
    "kb": 1000 / 1024,
    "k": 1,
    "kib": 1,
    "mb": 1000**2 / 1024,
    "m": 1024,
    "mib": 1024,
    "gb": 1000**3 / 1024,
    "g": 1024**2,
    "gib": 1024**2,
    "tb": 1000**4 / 1024,
    "t": 1024**3,
    "tib": 1024**3,
}


@dataclass(frozen=True)
class VncConsole:
    port: int | None
    listen: str
    autoport: bool


@dataclass(frozen=True)
class DomainSummary:
    """What the inventory needs from a domain's XML."""

    vcpus: int
    memory_mib: int
    current_memory_mib: int
    vnc: VncConsole | None


def _memory_mib(element: ET.Element | None) -> int:
    if element is None or not (element.text or "").strip():
        return 0
    unit = element.get("unit", "KiB").lower()
    factor = _UNIT_TO_KIB.get(unit)
    if factor is None:
        raise ValueError(f"unknown memory unit {unit!r}")
    return int(int(element.text.strip()) * factor) // 1024


def _vnc_console(root: ET.Element) -> VncConsole | None:
    graphics = root.find("./devices/graphics[@type='vnc']")
    if graphics is None:
        return None
    port_text = graphics.get("port", "-1")
    try:
        port: int | None = int(port_text)
    except ValueError:
        port = None
    if port is not None and port <= 0:
        port = None
    listen = graphics.get("listen") or ""
    listen_el = graphics.find("./listen[@type='address']")
    if listen_el is not None and listen_el.get("address"):
        listen = listen_el.get("address", "")
    return VncConsole(port=port, listen=listen, autoport=graphics.get("autoport") == "yes")


def parse_domain_xml(xml_text: str) -> DomainSummary:
    root = ET.fromstring(xml_text)
    vcpu_el = root.find("vcpu")
    vcpus = 0
    if vcpu_el is not None:
        vcpus = int(vcpu_el.get("current") or (vcpu_el.text or "0").strip() or 0)
    memory = _memory_mib(root.find("memory"))
    current = _memory_mib(root.find("currentMemory")) or memory
    return DomainSummary(
        vcpus=vcpus, memory_mib=memory, current_memory_mib=current, vnc=_vnc_console(root)
    )
