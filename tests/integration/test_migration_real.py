"""Live migration with copy-storage between two real lab nodes, through the product."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from unittest import mock

import pytest
from django.test import override_settings

from jobs import reaper, runner
from jobs.actions import request_abort
from jobs.choices import JobStatus
from jobs.context import JobContext
from jobs.models import Job
from nodes.hypervisor.states import VMState
from nodes.models import Node
from nodes.services import registry
from tests.integration.jobworker import start_worker
from tests.lab._util import read_pid
from tests.lab.fixtures import LabGuests
from tests.lab.lab import GuestInfo, Lab
from tests.lab.liveness import ALIVE, COUNTER, serial_numbers
from tests.lab.node import LabNode, veth_name
from tests.lab.trust import confirm_host_key
from tests.support.eager import eager_tasks
from tests.support.factories import actor
from vms.forms.migrate import migration_options
from vms.models import VirtualMachine
from vms.services import inventory, reconcile
from vms.services.migration.request import request_migration
from vms.services.reconcile import reconcile_all

RECORD = re.compile(r"KVMMGR-RECORD (\d+)")
DISK_RECORD = re.compile(rb"KVMMGR-REC (\d{8})\n")


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
        counts = [n for n in serial_numbers(path, ALIVE) if n > floor]
        if counts:
            return counts[0]
        time.sleep(0.5)
    tail = path.read_text(errors="replace")[-1500:] if path.exists() else "(no log)"
    raise AssertionError(f"no ALIVE counter above {floor} in {path}; its tail:\n{tail}")


def _register(node: LabNode) -> Node:
    row = Node.objects.filter(name=node.name).first() or registry.add_node(
        actor=actor(), name=node.name, uri=node.uri, virt_type="qemu"
    )
    assert inventory.refresh_node(row).ok
    confirm_host_key(row, node)
    return row


def _migrate(vm: VirtualMachine, dest: Node, **options: object) -> Job:
    job = request_migration(vm, dest, migration_options(options), actor("tester"))
    runner.execute(job.pk)
    job.refresh_from_db()
    return job


@pytest.fixture
def migrating_guest(
    lab: Lab, lab_node: LabNode, lab_node2: LabNode, lab_guests: LabGuests
) -> GuestInfo:
    name = lab_guests.track(f"mig{int(time.time() * 1000) % 100000}", lab_node, lab_node2)
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
    before = max(serial_numbers(migrating_guest.serial_log, ALIVE), default=0)

    job = _migrate(vm, node2)
    assert job.status == JobStatus.SUCCEEDED, job.log
    assert f"virsh -c qemu+ssh://root@{lab_node.address}/system migrate" in job.command
    assert "--copy-storage-all" in job.command
    assert f"--migrateuri tcp://{lab_node2.address}" in job.command
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
    source_counts = serial_numbers(migrating_guest.serial_log, COUNTER)
    dest_counts = serial_numbers(dest_log, COUNTER)
    assert source_counts and dest_counts
    assert min(dest_counts) >= max(source_counts) - 1, "the counter restarted: guest rebooted?"
    # Nothing lost: every record the guest announced on the source is on the destination disk.
    announced = set(serial_numbers(migrating_guest.serial_log, RECORD))
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


def _link_mtu(node: LabNode, device: str) -> int | None:
    """The device's MTU in the node's netns, or None when it does not exist."""
    proc = subprocess.run(
        ["ip", "-n", node.netns, "-o", "link", "show", device],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    words = proc.stdout.split()
    return int(words[words.index("mtu") + 1]) if proc.returncode == 0 else None


def _ip(node: LabNode, *args: str) -> None:
    subprocess.run(["ip", "-n", node.netns, *args], capture_output=True, timeout=10, check=True)


@pytest.mark.django_db
def test_dry_run_warns_when_the_destination_bridge_has_a_lower_mtu(
    manager_ssh: Path, lab: Lab, lab_node: LabNode, lab_node2: LabNode
) -> None:
    """node2's labbr0 lowered to 1400 (as a bridged VPN overlay does): warned, not refused."""
    lab_node.add_guest_bridge()
    old_mtu = _link_mtu(lab_node2, "labbr0")
    if old_mtu is None:
        _ip(lab_node2, "link", "add", "labbr0", "type", "bridge")
    _ip(lab_node2, "link", "set", "labbr0", "mtu", "1400", "up")
    name = f"mtu{int(time.time() * 1000) % 100000}"
    try:
        lab.boot_guest(lab_node, name, timeout=90, bridge="labbr0")
        _register(lab_node)
        node2 = _register(lab_node2)
        vm = VirtualMachine.objects.get(name=name)
        job = _migrate(vm, node2, check_only=True)
        assert job.status == JobStatus.SUCCEEDED, job.log
        assert "WARNING: bridge labbr0 on node2 has MTU 1400, the VM's NIC " in job.log
        assert (
            "sends 1500-byte frames (it has no <mtu>): large packets will be dropped; "
            "set <mtu size='1400'/>"
        ) in job.log
        assert "dry run" in job.log
    finally:
        lab_node.virsh("destroy", name)
        lab_node.virsh("undefine", name)
        if old_mtu is None:
            _ip(lab_node2, "link", "del", "labbr0")
        else:
            _ip(lab_node2, "link", "set", "labbr0", "mtu", str(old_mtu))


@pytest.mark.django_db
def test_abort_mid_migration_leaves_vm_on_source(
    manager_ssh: Path, lab_node: LabNode, lab_node2: LabNode, migrating_guest: GuestInfo
) -> None:
    _register(lab_node)
    node2 = _register(lab_node2)
    vm = VirtualMachine.objects.get(uuid=migrating_guest.uuid)
    # 1 MiB/s keeps the copy running long enough to abort it.
    job = request_migration(vm, node2, migration_options({"bandwidth_mib_s": 1}), actor("tester"))

    def abort_when_copying(ctx: JobContext) -> None:
        from vms.services.migration.live import run_migrate

        original = ctx.progress

        def progress(percent: int, **detail: object) -> None:
            original(percent, **detail)
            if detail.get("data_processed"):
                request_abort(Job.objects.get(pk=ctx.job.pk), actor())

        ctx.progress = progress  # type: ignore[method-assign]
        run_migrate(ctx)

    assert runner.execute(job.pk, handler=abort_when_copying) == JobStatus.ABORTED
    job.refresh_from_db()
    assert "removed /var/lib/libvirt/images" in job.log
    assert lab_node.virsh("domstate", migrating_guest.name, check=True).stdout.strip() == "running"
    assert lab_node2.virsh("domstate", migrating_guest.name).returncode != 0
    disk = Path("/var/lib/libvirt/images") / f"{migrating_guest.name}.qcow2"
    assert not lab_node2.host_path(disk).exists()
    assert lab_node.host_path(disk).exists()


def _source_job_type(node: LabNode, name: str) -> str:
    try:
        out = node.virsh("domjobinfo", name, timeout=10).stdout
    except subprocess.TimeoutExpired:
        # libvirtd answers slowly while it unwinds a cancelled migration: still busy.
        return "busy"
    match = re.search(r"Job type:\s+(\w+)", out)
    return match.group(1) if match else ""


@pytest.mark.django_db
def test_link_cut_mid_copy_keeps_vm_on_source_and_reconciler_cleans_up(
    manager_ssh: Path, lab_node: LabNode, lab_node2: LabNode, migrating_guest: GuestInfo
) -> None:
    _register(lab_node)
    node2 = _register(lab_node2)
    vm = VirtualMachine.objects.get(uuid=migrating_guest.uuid)
    veth = veth_name(lab_node2.name)
    disk = Path("/var/lib/libvirt/images") / f"{migrating_guest.name}.qcow2"
    cut = threading.Event()
    cut_at: list[float] = []

    def cut_when_copying() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if _source_job_type(lab_node, migrating_guest.name) == "Unbounded":
                time.sleep(1)
                subprocess.run(["ip", "link", "set", veth, "down"], check=True, timeout=10)
                cut_at.append(time.monotonic())
                cut.set()
                return
            time.sleep(0.3)

    cutter = threading.Thread(target=cut_when_copying, daemon=True)
    stall_s = 10
    options = {"bandwidth_mib_s": 1, "stall_timeout_s": stall_s}
    try:
        cutter.start()
        job = _migrate(vm, node2, **options)
        ended_at = time.monotonic()
        cutter.join(5)
        assert cut.is_set(), "the migration never started copying"
        assert job.status == JobStatus.FAILED, job.log
        # The truth, quickly: within the stall timeout + 15 s of the cut, with
        # the default abort wait (libvirt holds a cut migration 'cancelled' for minutes).
        took = ended_at - cut_at[0]
        print(f"LINK-CUT job failed {took:.1f}s after the cut: {job.error}")
        assert took <= stall_s + 15, (took, job.log)
        assert "on the source" in job.error, job.error
    finally:
        subprocess.run(["ip", "link", "set", veth, "up"], check=True, timeout=10)
    # Once the link is back, libvirt finishes rolling back: the VM runs on the source.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and _source_job_type(lab_node, migrating_guest.name) not in (
        "None",
        "",
    ):
        time.sleep(1)
    assert lab_node.virsh("domstate", migrating_guest.name, check=True).stdout.strip() == "running"
    assert lab_node2.virsh("domstate", migrating_guest.name).returncode != 0
    # The reconciler removes what the job created on the destination.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and reconcile_all():
        if not lab_node2.host_path(disk).exists():
            break
        time.sleep(2)
    assert not lab_node2.host_path(disk).exists()
    assert lab_node.host_path(disk).exists()
    job.refresh_from_db()
    assert job.status in (JobStatus.FAILED, JobStatus.ABORTED)
    assert "removed /var/lib/libvirt/images" in job.log


@pytest.mark.django_db
def test_destination_qemu_killed_mid_copy_leaves_vm_on_source_and_no_orphan(
    manager_ssh: Path, lab_node: LabNode, lab_node2: LabNode, migrating_guest: GuestInfo
) -> None:
    """The destination host fails under the migration (its qemu is SIGKILLed, as the
    OOM killer would): the job fails saying so, the guest never stops on the source,
    and what the job created on the destination is gone."""
    name = migrating_guest.name
    _register(lab_node)
    node2 = _register(lab_node2)
    vm = VirtualMachine.objects.get(uuid=migrating_guest.uuid)
    disk = Path("/var/lib/libvirt/images") / f"{name}.qcow2"
    pidfile = lab_node2.dir / "run" / "qemu" / f"{name}.pid"
    killed: list[int] = []

    def kill_destination_qemu_when_copying() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if _source_job_type(lab_node, name) == "Unbounded":
                time.sleep(1)
                pid = read_pid(pidfile)
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                return
            time.sleep(0.3)

    before = max(serial_numbers(migrating_guest.serial_log, ALIVE), default=0)
    killer = threading.Thread(target=kill_destination_qemu_when_copying, daemon=True)
    killer.start()
    job = _migrate(vm, node2, bandwidth_mib_s=1)
    killer.join(5)
    assert killed, "the migration never started copying"
    assert job.status == JobStatus.FAILED, job.log
    # Said as soon as the destination's copy vanished, not after the stall timeout.
    assert job.error.startswith(f"destination lost: the incoming copy of {name} on node2 is gone")
    assert "the VM stays on the source" in job.error and "stalled:" not in job.log, job.log
    # The guest kept running on the source the whole time, and goes on counting there.
    assert lab_node.virsh("domstate", name, check=True).stdout.strip() == "running"
    _wait_alive_after(migrating_guest.serial_log, before + 1)
    assert lab_node2.virsh("domstate", name).returncode != 0
    assert not lab_node2.host_path(disk).exists()
    assert lab_node.host_path(disk).exists()
    assert "removed /var/lib/libvirt/images" in job.log
    vm.refresh_from_db()
    assert vm.node.name == "node1" and vm.state == VMState.RUNNING
    # Nothing left for the reconciler.
    assert not reconcile_all()


@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_migration_is_reaped_and_reconciled(
    manager_ssh: Path,
    lab: Lab,
    lab_node: LabNode,
    lab_node2: LabNode,
    migrating_guest: GuestInfo,
) -> None:
    """The Celery worker running a migration is SIGKILLed mid-copy: the reaper fails
    the job, the reconciler stops the migration libvirt goes on with unsupervised and
    cleans the destination; the VM keeps running on the source with its disk."""
    name = migrating_guest.name
    with eager_tasks():  # committed at once here: the refreshes they queue run inline
        _register(lab_node)
        node2 = _register(lab_node2)
    vm = VirtualMachine.objects.get(uuid=migrating_guest.uuid)
    disk = Path("/var/lib/libvirt/images") / f"{name}.qcow2"
    before = max(serial_numbers(migrating_guest.serial_log, ALIVE), default=0)
    # The worker is the subprocess below: the queue must not hand the job to anyone else.
    with mock.patch("jobs.tasks.run_job.delay", autospec=True) as dispatch:
        job = request_migration(vm, node2, migration_options({"bandwidth_mib_s": 1}), actor("it"))
    dispatch.assert_called_once_with(job.pk)
    worker = start_worker(job.pk, lab.key_path, manager_ssh)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and _source_job_type(lab_node, name) != "Unbounded":
            assert worker.poll() is None, "the worker ended on its own"
            time.sleep(0.3)
        assert _source_job_type(lab_node, name) == "Unbounded", "the copy never started"
        time.sleep(1)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
    time.sleep(1.5)
    with override_settings(KVMMGR_JOB_STALE_AFTER=1.0), eager_tasks():
        assert reaper.reap_stale_jobs() == [job.pk]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.params.get("worker_died"), job.error
    # libvirt goes on migrating without its client (measured: its job still ran 150 s
    # after the kill). The reconciler's first pass stops that unsupervised migration...
    assert _source_job_type(lab_node, name) == "Unbounded"
    assert "aborted the unsupervised migration" in reconcile_all()[job.pk]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _source_job_type(lab_node, name) not in ("None", ""):
        time.sleep(1)
    # ...and the next ones remove what the job created on the destination.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and reconcile_all():
        time.sleep(2)
    assert not reconcile.pending_jobs(), "the reconciler did not settle the job"
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "libvirt went on migrating after the job's worker stopped" in job.log, job.log
    assert lab_node.virsh("domstate", name, check=True).stdout.strip() == "running"
    assert lab_node2.virsh("domstate", name).returncode != 0
    assert not lab_node2.host_path(disk).exists()
    assert lab_node.host_path(disk).exists()
    _wait_alive_after(migrating_guest.serial_log, before + 1)


@pytest.mark.django_db
def test_cold_migration_of_a_stopped_vm_copies_its_disk(
    manager_ssh: Path,
    lab_node: LabNode,
    lab_node2: LabNode,
    migrating_guest: GuestInfo,
    tmp_path: Path,
) -> None:
    name = migrating_guest.name
    disk = Path("/var/lib/libvirt/images") / f"{name}.qcow2"
    # Let the guest write records, then stop it hard: the disk holds them.
    deadline = time.monotonic() + 20
    while (
        time.monotonic() < deadline and len(serial_numbers(migrating_guest.serial_log, RECORD)) < 5
    ):
        time.sleep(0.5)
    lab_node.virsh("destroy", name, check=True)
    written = _records_on_disk(lab_node.host_path(disk), tmp_path)
    assert len(written) >= 5
    node1 = _register(lab_node)
    node2 = _register(lab_node2)
    vm = VirtualMachine.objects.get(uuid=migrating_guest.uuid)
    assert vm.state == VMState.SHUTOFF
    job = _migrate(vm, node2)
    assert job.status == JobStatus.SUCCEEDED, job.log
    assert "copied /var/lib/libvirt/images" in job.log
    assert lab_node2.virsh("domstate", name, check=True).stdout.strip() == "shut off"
    assert lab_node.virsh("domstate", name).returncode != 0
    assert not lab_node.host_path(disk).exists()
    assert _records_on_disk(lab_node2.host_path(disk), tmp_path) >= written
    vm.refresh_from_db()
    assert vm.node == node2 and vm.state == VMState.SHUTOFF
    # And back, so the session's other tests find node1 as they expect.
    assert _migrate(vm, node1).status == JobStatus.SUCCEEDED


@pytest.mark.django_db
def test_switch_to_postcopy_on_request_finishes_the_migration(
    manager_ssh: Path, lab_node: LabNode, lab_node2: LabNode, migrating_guest: GuestInfo
) -> None:
    from vms.services.migration.live import run_migrate
    from vms.services.migration.request import request_postcopy

    _register(lab_node)
    node1, node2 = Node.objects.get(name="node1"), _register(lab_node2)
    vm = VirtualMachine.objects.get(uuid=migrating_guest.uuid)
    # Slow enough that the switch happens while memory is still being copied.
    options = migration_options({"postcopy": "on", "bandwidth_mib_s": 4})
    job = request_migration(vm, node2, options, actor("tester"))

    def switch_when_copying_memory(ctx: JobContext) -> None:
        original = ctx.progress

        def progress(percent: int, **detail: object) -> None:
            original(percent, **detail)
            if str(detail.get("phase", "")).startswith("memory"):
                request_postcopy(Job.objects.get(pk=ctx.job.pk), actor())

        ctx.progress = progress  # type: ignore[method-assign]
        run_migrate(ctx)

    assert runner.execute(job.pk, handler=switch_when_copying_memory) == JobStatus.SUCCEEDED
    job.refresh_from_db()
    assert "switched to post-copy on request" in job.log, job.log
    assert lab_node2.virsh("domstate", migrating_guest.name, check=True).stdout.strip() == "running"
    assert lab_node.virsh("domstate", migrating_guest.name).returncode != 0
    vm.refresh_from_db()
    assert vm.node == node2
    assert _migrate(vm, node1).status == JobStatus.SUCCEEDED
