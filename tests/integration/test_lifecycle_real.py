"""VM lifecycle through the product's services and job runner on a real libvirtd + qemu (TCG).

Each test defines its own guest and removes it at the end; ``node1`` and
``tiny1`` are left as the session fixtures made them.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from jobs import reaper, runner
from jobs.choices import JobStatus
from jobs.models import Job
from nodes.hypervisor.states import VMState
from nodes.models import Node
from nodes.services import registry
from tests.integration.jobworker import start_worker
from tests.lab.lab import Lab
from tests.lab.node import LabNode
from tests.support.eager import eager_tasks
from tests.support.factories import actor
from vms.models import VirtualMachine
from vms.services import inventory, lifecycle

IMAGES = Path("/var/lib/libvirt/images")


def _run(job: Job) -> Job:
    runner.execute(job.pk)
    job.refresh_from_db()
    return job


def _vm(uuid: str) -> VirtualMachine:
    return VirtualMachine.objects.select_related("node").get(uuid=uuid)


def _node(lab_node: LabNode) -> Node:
    node = registry.add_node(actor=actor(), name="node1", uri=lab_node.uri)
    result = inventory.refresh_node(node)
    assert result.ok, result.error
    node.refresh_from_db()
    return node


@pytest.mark.django_db
def test_start_shutdown_start_force_off_delete_with_disk(
    manager_ssh: Path, lab: Lab, lab_node: LabNode
) -> None:
    name = "lcguest"
    lab.remove_guest(name, lab_node)  # leftovers of an interrupted run
    guest = lab.define_guest(lab_node, name, disk_mib=64)
    disk = lab_node.host_path(IMAGES / f"{name}.qcow2")
    try:
        assert disk.is_file()
        node = _node(lab_node)
        vm = _vm(guest.uuid)
        assert vm.state == VMState.SHUTOFF
        assert [d["target"] for d in lifecycle.deletable_disks(vm)] == ["vda"]
        assert vm.xml_summary["disks"][0]["path"] == str(IMAGES / f"{name}.qcow2")

        job = _run(lifecycle.request_start(vm, actor("it")))
        assert job.status == JobStatus.SUCCEEDED, job.error
        assert job.command == f"virsh -c {node.uri} start {name}"
        assert _vm(guest.uuid).state == VMState.RUNNING  # the inventory says so at once
        lab.wait_guest_up(lab_node, name, 90, serial_log=guest.serial_log)

        started = time.monotonic()
        job = _run(lifecycle.request_shutdown(_vm(guest.uuid), actor("it"), timeout=60))
        assert job.status == JobStatus.SUCCEEDED, job.error
        assert time.monotonic() - started < 60
        assert _vm(guest.uuid).state == VMState.SHUTOFF
        # The guest's acpid saw the power button: a clean ACPI shutdown, not a destroy.
        assert "KVMMGR-GUEST-POWEROFF" in guest.serial_log.read_text(errors="replace")

        guest.serial_log.write_text("")
        job = _run(lifecycle.request_start(_vm(guest.uuid), actor("it")))
        assert job.status == JobStatus.SUCCEEDED, job.error
        lab.wait_guest_up(lab_node, name, 90, serial_log=guest.serial_log)

        job = _run(lifecycle.request_force_off(_vm(guest.uuid), actor("it")))
        assert job.status == JobStatus.SUCCEEDED, job.error
        assert _vm(guest.uuid).state == VMState.SHUTOFF
        assert "KVMMGR-GUEST-POWEROFF" not in guest.serial_log.read_text(errors="replace")

        job = _run(lifecycle.request_delete(_vm(guest.uuid), actor("it"), disks=["vda"]))
        assert job.status == JobStatus.SUCCEEDED, job.error
        assert f"deleted disk vda ({IMAGES / name}.qcow2)" in job.log
        assert not disk.exists()
        assert lab_node.virsh("dominfo", name).returncode != 0
        assert _vm(guest.uuid).vanished_at is not None
    finally:
        lab.remove_guest(name, lab_node)


@pytest.mark.django_db
def test_shutdown_ignored_by_the_guest_times_out_then_force_off(
    manager_ssh: Path, lab: Lab, lab_node: LabNode
) -> None:
    name = "lcnoacpi"
    lab.remove_guest(name, lab_node)
    # acpi=off: the guest kernel never sees the power button, like a guest without acpid.
    guest = lab.define_guest(lab_node, name, cmdline_extra="acpi=off")
    try:
        lab.start_guest(lab_node, name)
        lab.wait_guest_up(lab_node, name, 90, serial_log=guest.serial_log)
        _node(lab_node)
        started = time.monotonic()
        job = _run(lifecycle.request_shutdown(_vm(guest.uuid), actor("it"), timeout=4))
        assert time.monotonic() - started < 15
        assert job.status == JobStatus.FAILED
        assert f"VM {name} did not shut down within 4 s" in job.error
        assert f"manage.py stopvm --force {name}" in job.error
        assert job.progress_detail.get("timed_out") is True
        assert _vm(guest.uuid).state == VMState.RUNNING
        job = _run(lifecycle.request_force_off(_vm(guest.uuid), actor("it")))
        assert job.status == JobStatus.SUCCEEDED, job.error
        assert _vm(guest.uuid).state == VMState.SHUTOFF
    finally:
        lab.remove_guest(name, lab_node)


@pytest.mark.django_db
def test_paused_guest_shutdown_is_refused_clearly(
    manager_ssh: Path, lab: Lab, lab_node: LabNode
) -> None:
    name = "lcpaused"
    lab.remove_guest(name, lab_node)
    guest = lab.define_guest(lab_node, name)
    try:
        lab.start_guest(lab_node, name)
        lab_node.virsh("suspend", name, check=True)
        _node(lab_node)
        vm = _vm(guest.uuid)
        assert vm.state == VMState.PAUSED
        with pytest.raises(ValidationError, match="cannot react to the ACPI power button"):
            lifecycle.request_shutdown(vm, actor("it"))
        job = _run(lifecycle.request_force_off(vm, actor("it")))
        assert job.status == JobStatus.SUCCEEDED, job.error
    finally:
        lab.remove_guest(name, lab_node)


@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_job_is_reaped(manager_ssh: Path, lab: Lab, lab_node: LabNode) -> None:
    name = "lckilled"
    lab.remove_guest(name, lab_node)
    # Ignores ACPI, so the shutdown job is still waiting when its worker dies.
    guest = lab.define_guest(lab_node, name, cmdline_extra="acpi=off")
    worker: subprocess.Popen[bytes] | None = None
    try:
        lab.start_guest(lab_node, name)
        lab.wait_guest_up(lab_node, name, 90, serial_log=guest.serial_log)
        with eager_tasks():
            _node(lab_node)
        # The worker is the subprocess below: the queue must not hand the job to anyone else.
        with mock.patch("jobs.tasks.run_job.delay", autospec=True) as dispatch:
            job = lifecycle.request_shutdown(_vm(guest.uuid), actor("it"), timeout=300)
        dispatch.assert_called_once_with(job.pk)
        worker = start_worker(job.pk, lab.key_path, manager_ssh)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.status == JobStatus.RUNNING and job.progress_detail.get("elapsed"):
                break
            assert worker.poll() is None, "the worker ended on its own"
            time.sleep(0.2)
        assert job.status == JobStatus.RUNNING and "shutdown --mode acpi" in job.log
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        time.sleep(1.5)
        job.refresh_from_db()
        assert job.status == JobStatus.RUNNING  # nobody left to finish it
        with override_settings(KVMMGR_JOB_STALE_AFTER=1.0), eager_tasks():
            assert reaper.reap_stale_jobs() == [job.pk]
        job.refresh_from_db()
        assert job.status == JobStatus.FAILED and job.finished_at is not None
        assert "the worker running this job stopped" in job.error
        assert "reaper:" in job.log
        # The VM is free for the next action once its job is failed (run inline here).
        with eager_tasks():
            job = lifecycle.request_force_off(_vm(guest.uuid), actor("it"))
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED, job.error
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
        lab.remove_guest(name, lab_node)
