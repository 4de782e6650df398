"""A test-driver host for lifecycle tests: domains with disks, NICs, consoles, and a pool.

``tests/support/nodexml.py`` builds large inventories of bare domains; lifecycle tests
need a few domains whose disks are real volumes of a pool (so delete can go
through libvirt's storage API), a CD-ROM, a disk outside every pool, and a
volume shared by two domains.
"""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodes.models import Node

IMAGES = "/var/lib/libvirt/images"
WEB1 = "11111111-1111-4111-8111-111111111111"
DB1 = "22222222-2222-4222-8222-222222222222"
STRAY = "33333333-3333-4333-8333-333333333333"
SHARE1 = "44444444-4444-4444-8444-444444444444"
SHARE2 = "55555555-5555-4555-8555-555555555555"

RUNNING = 1
SHUTOFF = 5


def _disk_file(path: str, target: str, fmt: str = "qcow2") -> str:
    return (
        f"<disk type='file' device='disk'><driver name='qemu' type='{fmt}'/>"
        f"<source file='{path}'/><target dev='{target}' bus='virtio'/></disk>"
    )


def _domain(name: str, uuid: str, runstate: int, disks: list[str]) -> str:
    return f"""
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>{name}</name><uuid>{uuid}</uuid>
    <memory unit='MiB'>256</memory><vcpu>1</vcpu>
    <os><type arch='i686'>hvm</type></os>
    <devices>
      {"".join(disks)}
      <interface type='network'><mac address='52:54:00:00:00:{uuid[:2]}'/>
        <source network='default'/><model type='virtio'/></interface>
      <serial type='pty'><target port='0'/></serial>
      <console type='pty'><target type='serial' port='0'/></console>
      <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>
    </devices>
    <test:runstate>{runstate}</test:runstate>
  </domain>"""


def _volume(name: str, fmt: str = "qcow2") -> str:
    return (
        f"<volume type='file'><name>{name}</name><capacity unit='MiB'>64</capacity>"
        f"<allocation unit='MiB'>1</allocation><target><path>{IMAGES}/{name}</path>"
        f"<format type='{fmt}'/></target></volume>"
    )


def write_lifecycle_host(path: Path) -> str:
    """Write the host and return its ``test:///`` URI.

    - ``web1`` running: vda (pool file), vdb (pool volume by name), sda (CD-ROM ISO)
    - ``db1`` shut off: vda (pool file)
    - ``stray`` shut off: vda, a file outside every pool
    - ``share1``/``share2`` shut off: both use ``shared.qcow2`` as vda
    """
    domains = [
        _domain(
            "web1",
            WEB1,
            RUNNING,
            [
                _disk_file(f"{IMAGES}/web1.qcow2", "vda"),
                "<disk type='volume' device='disk'><driver name='qemu' type='raw'/>"
                "<source pool='default' volume='web1-data.img'/>"
                "<target dev='vdb' bus='virtio'/></disk>",
                "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>"
                f"<source file='{IMAGES}/debian.iso'/><target dev='sda' bus='sata'/>"
                "<readonly/></disk>",
            ],
        ),
        _domain("db1", DB1, SHUTOFF, [_disk_file(f"{IMAGES}/db1.qcow2", "vda")]),
        _domain("stray", STRAY, SHUTOFF, [_disk_file("/srv/elsewhere/stray.img", "vda", "raw")]),
        _domain("share1", SHARE1, SHUTOFF, [_disk_file(f"{IMAGES}/shared.qcow2", "vda")]),
        _domain("share2", SHARE2, SHUTOFF, [_disk_file(f"{IMAGES}/shared.qcow2", "vda")]),
    ]
    volumes = [
        _volume("web1.qcow2"),
        _volume("web1-data.img", "raw"),
        _volume("debian.iso", "raw"),
        _volume("db1.qcow2"),
        _volume("shared.qcow2"),
    ]
    path.write_text(
        f"""<node>
  <cpu><mhz>2000</mhz><model>i686</model><active>4</active><nodes>1</nodes>
  <sockets>1</sockets><cores>4</cores><threads>1</threads></cpu>
  <memory>8388608</memory>
{"".join(domains)}
  <pool type='dir'>
    <name>default</name>
    <uuid>{uuidlib.uuid5(uuidlib.NAMESPACE_URL, str(path))}</uuid>
    <capacity unit='GiB'>100</capacity><allocation unit='GiB'>10</allocation>
    <available unit='GiB'>90</available>
    <target><path>{IMAGES}</path></target>
    {"".join(volumes)}
  </pool>
</node>
""",
        encoding="utf-8",
    )
    return f"test://{path}"


def make_lifecycle_node(directory: Path, name: str = "lc") -> Node:
    """A node on the lifecycle host, refreshed once so it is online with its VMs."""
    from tests.support.factories import make_node
    from vms.services.inventory import refresh_node

    node = make_node(name=name, uri=write_lifecycle_host(directory / f"{name}.xml"))
    result = refresh_node(node)
    assert result.ok, result.error
    node.refresh_from_db()
    return node
