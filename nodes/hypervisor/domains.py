"""Listing domains on a node as plain dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import libvirt

from nodes.hypervisor.connection import connection_for
from nodes.hypervisor.errors import HypervisorError
from nodes.hypervisor.states import VMState, state_from_libvirt
from nodes.hypervisor.xml import parse_domain_devices, parse_domain_xml


@dataclass(frozen=True)
class DomainInfo:
    """One domain as the inventory stores it."""

    name: str
    uuid: str
    state: VMState
    vcpus: int
    memory_mib: int
    persistent: bool
    vnc_port: int | None
    vnc_listen: str
    # Disks, NICs, consoles (``DomainDevices.as_dict()``) for the VM detail page.
    xml_summary: dict[str, Any] = field(default_factory=dict)


def _describe(dom: libvirt.virDomain, persistent: bool) -> DomainInfo:
    state_code, _reason = dom.state()
    xml_text = dom.XMLDesc(0)
    summary = parse_domain_xml(xml_text)
    state = state_from_libvirt(state_code)
    vnc = summary.vnc
    # An autoport console has a port only while the domain runs; a fixed port belongs
    # to the domain running or not (a new VM must not take it: they could not both run).
    active = state in VMState.active()
    fixed = vnc is not None and not vnc.autoport
    return DomainInfo(
        name=dom.name(),
        uuid=dom.UUIDString(),
        state=state,
        vcpus=summary.vcpus,
        memory_mib=summary.memory_mib,
        persistent=persistent,
        vnc_port=vnc.port if vnc is not None and (active or fixed) else None,
        vnc_listen=vnc.listen if vnc is not None else "",
        xml_summary=parse_domain_devices(xml_text).as_dict(),
    )


def list_domains(uri: str) -> list[DomainInfo]:
    """Every domain on the node, running or defined.

    A domain that disappears between listing and describing it (undefined or
    migrated away mid-call) is skipped rather than failing the whole listing.
    """
    with connection_for(uri) as conn:
        domains = conn.listAllDomains(0)
        persistent = {
            dom.UUIDString()
            for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT)
        }
        result: list[DomainInfo] = []
        for dom in domains:
            try:
                result.append(_describe(dom, dom.UUIDString() in persistent))
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    continue
                raise
            except ValueError as exc:
                raise HypervisorError(
                    f"{uri}: domain {dom.name()!r} has XML we cannot read: {exc}"
                ) from exc
        return result
