"""Parsing of libvirt domain XML: the one place that knows its shape."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

# Keep libvirt's usual prefixes when a domain XML is written back out.
ET.register_namespace("qemu", "http://libvirt.org/schemas/domain/qemu/1.0")

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


def domain_virt_type(xml_text: str) -> str:
    """The domain's ``type`` attribute: ``kvm``, ``qemu`` (TCG, software emulation), …"""
    return ET.fromstring(xml_text).get("type", "")


# -- devices: disks, NICs, consoles (the VM detail page and delete's disk choice) --


@dataclass(frozen=True)
class DiskDevice:
    """One ``<disk>``: where it lives and whether it may be offered for deletion."""

    target: str
    device: str  # disk, cdrom, floppy, lun
    source_type: str  # file, block, volume, network
    path: str  # file or block device path ("" for volume/network disks)
    pool: str
    volume: str
    format: str
    bus: str
    readonly: bool
    shareable: bool

    @property
    def deletable(self) -> bool:
        """Only the VM's own writable disks; never an ISO, a shared or a network disk."""
        return (
            self.device == "disk"
            and self.source_type in {"file", "block", "volume"}
            and not self.readonly
            and not self.shareable
            and bool(self.path or (self.pool and self.volume))
        )


@dataclass(frozen=True)
class NicDevice:
    mac: str
    type: str  # network, bridge, direct, user…
    source: str
    model: str
    mtu: int | None = None  # the NIC's own <mtu size=…/>; None: the link's default (1500)


@dataclass(frozen=True)
class ConsoleDevice:
    """A text console (``<console>``/``<serial>``) or a graphical one (``<graphics>``)."""

    kind: str  # console, serial, graphics
    type: str  # pty, file, vnc, spice…
    detail: str  # log path, listen:port…


@dataclass(frozen=True)
class DomainDevices:
    disks: tuple[DiskDevice, ...]
    nics: tuple[NicDevice, ...]
    consoles: tuple[ConsoleDevice, ...]
    nvram: str
    uefi: bool  # firmware with a per-VM NVRAM store (undefine must remove it too)

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form, stored with the inventory row (``VirtualMachine.xml_summary``)."""
        return {
            "disks": [{**vars(d), "deletable": d.deletable} for d in self.disks],
            "nics": [vars(n) for n in self.nics],
            "consoles": [vars(c) for c in self.consoles],
            "nvram": self.nvram,
            "uefi": self.uefi,
        }


def _disk(element: ET.Element) -> DiskDevice | None:
    target = element.find("target")
    if target is None or not target.get("dev"):
        return None
    source = element.find("source")
    source_type = element.get("type", "file")
    path = pool = volume = ""
    if source is not None:
        path = source.get("file") or source.get("dev") or ""
        pool, volume = source.get("pool", ""), source.get("volume", "")
        if source_type == "network":
            path = f"{source.get('protocol', '')}:{source.get('name', '')}"
    driver = element.find("driver")
    return DiskDevice(
        target=target.get("dev", ""),
        device=element.get("device", "disk"),
        source_type=source_type,
        path=path,
        pool=pool,
        volume=volume,
        format=driver.get("type", "") if driver is not None else "",
        bus=target.get("bus", ""),
        readonly=element.find("readonly") is not None,
        shareable=element.find("shareable") is not None,
    )


def _nic(element: ET.Element) -> NicDevice:
    mac = element.find("mac")
    source = element.find("source")
    model = element.find("model")
    nic_type = element.get("type", "")
    mtu_el = element.find("mtu")
    source_name = ""
    if source is not None:
        source_name = source.get("network") or source.get("bridge") or source.get("dev") or ""
    mtu = mtu_el.get("size", "") if mtu_el is not None else ""
    return NicDevice(
        mac=mac.get("address", "") if mac is not None else "",
        type=nic_type,
        source=source_name,
        model=model.get("type", "") if model is not None else "",
        mtu=int(mtu) if mtu.isdigit() and int(mtu) > 0 else None,
    )


def _consoles(devices: ET.Element) -> list[ConsoleDevice]:
    result = []
    for kind in ("console", "serial"):
        for element in devices.findall(kind):
            source = element.find("source")
            detail = source.get("path", "") if source is not None else ""
            result.append(ConsoleDevice(kind=kind, type=element.get("type", ""), detail=detail))
    for element in devices.findall("graphics"):
        listen = element.get("listen") or ""
        listen_el = element.find("./listen[@type='address']")
        if listen_el is not None and listen_el.get("address"):
            listen = listen_el.get("address", "")
        port = element.get("port", "")
        detail = f"{listen or '*'}:{port if port and port != '-1' else 'auto'}"
        result.append(ConsoleDevice(kind="graphics", type=element.get("type", ""), detail=detail))
    return result


def parse_domain_devices(xml_text: str) -> DomainDevices:
    """Disks, NICs, consoles and the NVRAM file of a domain, for display and for delete."""
    root = ET.fromstring(xml_text)
    devices = root.find("devices")
    if devices is None:
        devices = ET.Element("devices")
    disks = [d for d in (_disk(e) for e in devices.findall("disk")) if d is not None]
    nvram_el = root.find("./os/nvram")
    nvram = (nvram_el.text or "").strip() if nvram_el is not None else ""
    os_el = root.find("os")
    loader = root.find("./os/loader")
    uefi = bool(
        nvram
        or (os_el is not None and os_el.get("firmware") == "efi")
        or (loader is not None and loader.get("type") == "pflash")
    )
    return DomainDevices(
        disks=tuple(disks),
        nics=tuple(_nic(e) for e in devices.findall("interface")),
        consoles=tuple(_consoles(devices)),
        nvram=nvram,
        uefi=uefi,
    )


#: Devices whose medium can be taken out without changing the guest's hardware.
REMOVABLE_DEVICES = frozenset({"cdrom", "floppy"})


def without_media(xml_text: str, targets: set[str] | frozenset[str]) -> str:
    """The domain XML with the media of the given removable drives taken out.

    The drives stay (same bus, same address: the guest's hardware is unchanged,
    which libvirt's ABI check on a migration's destination XML demands); only
    their ``<source>`` goes, as if the tray had been emptied. Targets the XML does
    not have are left alone (a live-only or config-only drive); ``ValueError`` for
    a target that is not a CD-ROM or floppy drive.
    """
    root = ET.fromstring(xml_text)
    for element in root.findall("./devices/disk"):
        target = element.find("target")
        dev = target.get("dev", "") if target is not None else ""
        if dev not in targets:
            continue
        if element.get("device", "disk") not in REMOVABLE_DEVICES:
            raise ValueError(f"{dev} is not a CD-ROM or floppy drive: it has no medium to take out")
        for child in list(element):
            if child.tag in {"source", "backingStore"}:
                element.remove(child)
    return ET.tostring(root, encoding="unicode")


def vnc_graphics_with_password(domain_xml: str, password: str) -> str | None:
    """The domain's VNC ``<graphics>`` element with ``password`` and no expiry, for
    ``updateDeviceFlags``; None when the domain has no VNC display."""
    graphics = ET.fromstring(domain_xml).find("./devices/graphics[@type='vnc']")
    if graphics is None:
        return None
    graphics.set("passwd", password)
    graphics.attrib.pop("passwdValidTo", None)
    return ET.tostring(graphics, encoding="unicode")
