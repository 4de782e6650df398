"""Live migration with copy-storage between two real lab nodes, through the product."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from nodes.models import Node
from nodes.services import registry
from tests.lab.lab import GuestInfo, Lab
from tests.lab.node import LabNode
from vms.choices import JobStatus, VMState
from vms.models import Job, VirtualMachine
from vms.services import inventory, jobs
from vms.services.migration import parse_options, request_migration

ALIVE = re.compile(r"KVMMGR-GUEST-ALIVE (\d+)")
COUNT = re.compile(r"KVMMGR-COUNT (\d+)")
RECORD = re.compile(r"KVMMGR-RECORD (\d+)")
DISK_RECORD = re.compile(rb"KVMMGR-REC (\d{8})\n")


def _alive_counts(path: Path) -> list[int]:
    try:
        return [int(n) for n in ALIVE.findall(path.read_text(errors="replace"))]
    except FileNotFoundError:
        return []


def _numbers(pattern: re.Pattern[str], path: Path) -> list[int]:
    try:
        return [int(n) for n in pattern.findall(path.read_text(errors="replace"))]
    except FileNotFoundError:
        return []


def _records_on_disk(image: Path, tmp_path: Path) -> set[int]:
    """Record numbers in a qcow2 image, read without disturbing the running guest."""
    raw = tmp_path / "disk.raw"
    subprocess.run(
        ["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", str(image), str(raw)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    data = raw.read_bytes()
    raw.unlink()
    return {int(n) for n in DISK_RECORD.findall(data)}


def _wait_alive_after(path: Path, floor: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = [n for n in _alive_counts(path) if n > floor]
        if counts:
            return counts[0]
        time.sleep(0.5)
    raise AssertionError(f"no ALIVE counter above {floor} in {path}")


def _register(node: LabNode) -> Node:
    row = Node.objects.filter(name=node.name).first() or registry.add_node(
        name=node.name, uri=node.uri, virt_type="qemu"
    )
    assert inventory.refresh_node(row).ok
    return row


def _migrate(vm: VirtualMachine, dest: Node, **options: object) -> Job:
    job = request_migration(vm, dest, parse_options(options), "tester")
    jobs.execute(job.pk)
    job.refresh_from_db()
    return job


@pytest.fixture
def migrating_guest(lab: Lab, lab_node: LabNode, lab_node2: LabNode) -> GuestInfo:
    name = f"mig{int(time.time() * 1000) % 100000}"
    info, _ = lab.boot_guest(
        lab_node, name, timeout=90, disk_mib=64, cmdline_extra="dirty=4 counter=1 records=1"
    )
    return info


@pytest.mark.django_db
def test_live_migration_there_and_back(
    manager_ssh: Path,
    lab_node: LabNode,
    lab_node2: LabNode,
    migrating_guest: GuestInfo,
    tmp_path: Path,
) -> None:
    node1, node2 = _register(lab_node), _register(lab_node2)
    vm = VirtualMachine.objects.get(uuid=migrating_guest.uuid)
    assert vm.node == node1 and vm.state == VMState.RUNNING
    disk = Path("/var/lib/libvirt/images") / f"{migrating_guest.name}.qcow2"
    before = max(_alive_counts(migrating_guest.serial_log), default=0)

    job = _migrate(vm, node2)
    assert job.status == JobStatus.SUCCEEDED, job.log
    assert "virsh -c qemu+ssh://root@198.51.100.11/system migrate" in job.command
    assert "--copy-storage-all" in job.command and "--migrateuri tcp://198.51.100.12" in job.command
    assert job.progress == 100 and job.progress_detail["downtime_ms"] is not None
    # The domain runs on node2 only, persistent there; the source copy is gone.
    assert lab_node2.virsh("domstate", migrating_guest.name, check=True).stdout.strip() == "running"
    assert lab_node.virsh("domstate", migrating_guest.name).returncode != 0
    assert (
        lab_node2.virsh("dominfo", migrating_guest.name, check=True).stdout.count(
            "Persistent:     yes"
        )
        == 1
    )
    assert not lab_node.host_path(disk).exists()
    assert lab_node2.host_path(disk).exists()
    vm.refresh_from_db()
    assert vm.node == node2 and vm.state == VMState.RUNNING
    # The guest was not rebooted: its counters continue on the destination.
    dest_log = lab_node2.host_path(f"/var/log/libvirt/qemu/{migrating_guest.name}-serial.log")
    assert _wait_alive_after(dest_log, before) > before
    source_counts = _numbers(COUNT, migrating_guest.serial_log)
    dest_counts = _numbers(COUNT, dest_log)
    assert source_counts and dest_counts
    assert min(dest_counts) >= max(source_counts) - 1, "the counter restarted: guest rebooted?"
    # Nothing lost: every record the guest announced on the source is on the destination disk.
    announced = set(_numbers(RECORD, migrating_guest.serial_log))
    assert len(announced) >= 5
    on_disk = _records_on_disk(lab_node2.host_path(disk), tmp_path)
    assert announced <= on_disk, f"records lost: {sorted(announced - on_disk)[:10]}"

    back = _migrate(vm, node1)
    assert back.status == JobStatus.SUCCEEDED, back.log
    assert lab_node.virsh("domstate", migrating_guest.name, check=True).stdout.strip() == "running"
    assert lab_node2.virsh("domstate", migrating_guest.name).returncode != 0
    vm.refresh_from_db()
    assert vm.node == node1


@pytest.mark.django_db
def test_dry_run_and_prechecks_change_nothing(
    manager_ssh: Path, lab: Lab, lab_node: LabNode, lab_node2: LabNode, migrating_guest: GuestInfo
) -> None:
    _register(lab_node)
    node2 = _register(lab_node2)
    vm = VirtualMachine.objects.get(uuid=migrating_guest.uuid)
    job = _migrate(vm, node2, check_only=True)
    assert job.status == JobStatus.SUCCEEDED, job.log
    assert "dry run" in job.log and "check CPU compatibility: ok" in job.log
    assert lab_node.virsh("domstate", migrating_guest.name, check=True).stdout.strip() == "running"
    # A stale volume of the same name on the destination is refused, not reused.
    lab_node2.virsh("vol-create-as", "default", f"{migrating_guest.name}.qcow2", "1M", check=True)
    try:
        job = _migrate(vm, node2)
        assert job.status == JobStatus.FAILED
        assert "already exists on node2" in job.error
        assert lab_node.virsh("domstate", migrating_guest.name, check=True).stdout.strip() == (
            "running"
        )
    finally:
        lab_node2.virsh("vol-delete", f"{migrating_guest.name}.qcow2", "--pool", "default")


@pytest.mark.django_db
def test_abort_mid_migration_leaves_vm_on_source(
    manager_ssh: Path, lab_node: LabNode, lab_node2: LabNode, migrating_guest: GuestInfo
) -> None:
    _register(lab_node)
    node2 = _register(lab_node2)
    vm = VirtualMachine.objects.get(uuid=migrating_guest.uuid)
    # 1 MiB/s keeps the copy running long enough to abort it.
    job = request_migration(vm, node2, parse_options({"bandwidth_mib_s": 1}), "tester")

    def abort_when_copying(ctx: jobs.JobContext) -> None:
        from vms.services.migration import run_migrate

        original = ctx.progress

        def progress(percent: int, **detail: object) -> None:
            original(percent, **detail)
            if detail.get("data_processed"):
                jobs.request_abort(Job.objects.get(pk=ctx.job.pk))

        ctx.progress = progress  # type: ignore[method-assign]
        run_migrate(ctx)

    assert jobs.execute(job.pk, handler=abort_when_copying) == JobStatus.ABORTED
    job.refresh_from_db()
    assert "removed /var/lib/libvirt/images" in job.log
    assert lab_node.virsh("domstate", migrating_guest.name, check=True).stdout.strip() == "running"
    assert lab_node2.virsh("domstate", migrating_guest.name).returncode != 0
    disk = Path("/var/lib/libvirt/images") / f"{migrating_guest.name}.qcow2"
    assert not lab_node2.host_path(disk).exists()
    assert lab_node.host_path(disk).exists()
