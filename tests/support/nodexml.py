"""Builds node description files for libvirt's test driver (``test:///ABS/PATH.xml``).

The test driver reads a whole fake host from one XML file; we generate such files
with as many domains as a test or benchmark needs, in mixed states, with VNC
consoles, so the real adapter runs against a real libvirt driver.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

RUNSTATE_RUNNING = 1
RUNSTATE_PAUSED = 3
RUNSTATE_SHUTOFF = 5


@dataclass(frozen=True)
class FakeDomain:
    name: str
    uuid: str
    runstate: int = RUNSTATE_RUNNING
    vcpus: int = 1
    memory_mib: int = 512
    vnc_port: int | None = None


def make_domains(count: int, *, prefix: str = "vm", seed: str = "node") -> list[FakeDomain]:
    """``count`` domains: two thirds running with a VNC port, the rest shut off."""
    domains = []
    for index in range(count):
        running = index % 3 != 2
        domains.append(
            FakeDomain(
                name=f"{prefix}{index:04d}",
                uuid=str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"{seed}/{prefix}{index}")),
                runstate=RUNSTATE_RUNNING if running else RUNSTATE_SHUTOFF,
                vcpus=1 + index % 4,
                memory_mib=256 * (1 + index % 8),
                vnc_port=5900 + index if running else None,
            )
        )
    return domains


def _domain_xml(domain: FakeDomain) -> str:
    graphics = (
        f"<graphics type='vnc' port='{domain.vnc_port}' autoport='no' listen='0.0.0.0'/>"
        if domain.vnc_port
        else "<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>"
    )
    return f"""
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>{escape(domain.name)}</name>
    <uuid>{domain.uuid}</uuid>
    <memory unit='MiB'>{domain.memory_mib}</memory>
    <currentMemory unit='MiB'>{domain.memory_mib}</currentMemory>
    <vcpu>{domain.vcpus}</vcpu>
    <os><type arch='i686'>hvm</type></os>
    <devices>{graphics}</devices>
    <test:runstate>{domain.runstate}</test:runstate>
  </domain>"""


def write_node_xml(path: Path, domains: list[FakeDomain], *, memory_mib: int = 65536) -> Path:
    body = "".join(_domain_xml(d) for d in domains)
    path.write_text(
        f"""<node>
  <cpu><mhz>2000</mhz><model>i686</model><active>16</active><nodes>1</nodes>
  <sockets>1</sockets><cores>16</cores><threads>1</threads></cpu>
  <memory>{memory_mib * 1024}</memory>
{body}
  <pool type='dir'>
    <name>default</name>
    <uuid>{uuidlib.uuid5(uuidlib.NAMESPACE_URL, str(path))}</uuid>
    <capacity unit='GiB'>100</capacity><allocation unit='GiB'>10</allocation>
    <available unit='GiB'>90</available>
    <target><path>/var/lib/libvirt/images</path></target>
  </pool>
</node>
""",
        encoding="utf-8",
    )
    return path
