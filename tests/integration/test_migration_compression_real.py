"""zstd multifd compression in a real live migration between the lab nodes (QEMU 10).

The lab runs libvirt 11.3 / QEMU 10.0 (Debian 13's versions; bookworm-backports on
Debian 12), which has zstd multifd compression. One quick migration with
``compression=zstd`` must say so in the job (log and equivalent virsh command) and
libvirt's job statistics must show it: the non-zero memory pages take fewer bytes
on the wire than their size.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from jobs import runner
from jobs.choices import JobStatus
from nodes.models import Node
from nodes.services import registry
from tests.lab.fixtures import LabGuests
from tests.lab.lab import Lab
from tests.lab.liveness import ALIVE, serial_numbers
from tests.lab.node import LabNode
from tests.lab.trust import confirm_host_key
from tests.support.factories import actor
from vms.forms.migrate import migration_options
from vms.models import VirtualMachine
from vms.services import inventory
from vms.services.migration.request import request_migration


def _register(node: LabNode) -> Node:
    row = Node.objects.filter(name=node.name).first() or registry.add_node(
        actor=actor(), name=node.name, uri=node.uri, virt_type="qemu"
    )
    assert inventory.refresh_node(row).ok
    confirm_host_key(row, node)
    row.refresh_from_db()
    return row


@pytest.mark.django_db
def test_zstd_multifd_compression_is_used_and_shows_in_the_stats(
    manager_ssh: Path, lab: Lab, lab_node: LabNode, lab_node2: LabNode, lab_guests: LabGuests
) -> None:
    node1, node2 = _register(lab_node), _register(lab_node2)
    for node in (node1, node2):
        assert node.qemu_version.split(".")[0] == "10", node.facts.get("hypervisor_version")
        assert "zstd" in node.facts["migration_features"], node.facts
    name = lab_guests.track(f"zst{int(time.time() * 1000) % 100000}", lab_node, lab_node2)
    guest, _ = lab.boot_guest(lab_node, name, timeout=90, disk_mib=32)
    # Both freshly seen (the boot took longer than the offline threshold).
    assert inventory.refresh_node(node1).ok and inventory.refresh_node(node2).ok
    vm = VirtualMachine.objects.get(uuid=guest.uuid)
    job = request_migration(vm, node2, migration_options({"compression": "zstd"}), actor("tester"))
    runner.execute(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.log
    print(f"ZSTD-MIGRATION {job.progress_detail}\n{job.log}")
    assert "node versions: node1: libvirt 11." in job.log, job.log
    assert "migration features used: zstd multifd compression over 2 parallel" in job.log
    assert "runs under TCG" not in job.log  # QEMU 10 on both ends: no lost-memory warning
    assert "--compressed --comp-methods zstd --parallel --parallel-connections 2" in job.command
    # libvirt's statistics of the finished job: the pages took fewer bytes on the wire.
    detail = job.progress_detail
    assert detail["memory_normal_bytes"] > 1024 * 1024, detail
    assert detail["memory_processed"] < 0.8 * detail["memory_normal_bytes"], detail
    assert "on the wire (ratio 0." in job.log
    assert lab_node2.virsh("domstate", name, check=True).stdout.strip() == "running"
    # The guest lives on: its ALIVE line continues on the destination.
    before = max(serial_numbers(guest.serial_log, ALIVE), default=0)
    dest_log = lab_node2.host_path(f"/var/log/libvirt/qemu/{name}-serial.log")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not [
        n for n in serial_numbers(dest_log, ALIVE) if n > before
    ]:
        time.sleep(0.5)
    assert [n for n in serial_numbers(dest_log, ALIVE) if n > before], dest_log.read_text()[-800:]
