"""Lifecycle services and job handlers on libvirt's test driver, run by the real runner."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from jobs import runner
from jobs.choices import JobStatus
from jobs.errors import JobConflict
from jobs.models import Job
from nodes.hypervisor import connection_for
from nodes.hypervisor import lifecycle as hv
from nodes.hypervisor.states import VMState
from nodes.models import Node
from tests.support.factories import actor, make_node, make_vm
from tests.support.lifecyclehost import DB1, IMAGES, SHARE1, STRAY, WEB1, make_lifecycle_node
from vms.choices import JobKind
from vms.models import VirtualMachine
from vms.services import lifecycle

pytestmark = pytest.mark.django_db


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return make_lifecycle_node(tmp_path)


def _vm(uuid: str) -> VirtualMachine:
    return VirtualMachine.objects.select_related("node").get(uuid=uuid)


def _run(job: Job) -> Job:
    runner.execute(job.pk)
    job.refresh_from_db()
    return job


def _pool_paths(node: Node) -> set[str]:
    with connection_for(node.uri) as conn:
        return {v.path() for v in conn.storagePoolLookupByName("default").listAllVolumes()}


def _live_state(node: Node, uuid: str) -> VMState:
    return hv.domain_state(node.uri, uuid, "x")


def test_inventory_stores_the_xml_summary(node: Node) -> None:
    summary = _vm(WEB1).xml_summary
    assert [d["target"] for d in summary["disks"]] == ["vda", "vdb", "sda"]
    assert [d["target"] for d in lifecycle.deletable_disks(_vm(WEB1))] == ["vda", "vdb"]
    assert summary["nics"][0]["source"] == "default"
    assert {c["kind"] for c in summary["consoles"]} == {"console", "serial", "graphics"}


def test_start_runs_as_a_job_and_refreshes_the_inventory(node: Node) -> None:
    job = lifecycle.request_start(_vm(DB1), actor("alice"))
    assert (job.kind, job.status, job.params, job.requested_by) == (
        JobKind.START,
        JobStatus.QUEUED,
        {},
        "alice",
    )
    job = _run(job)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.command == f"virsh -c {node.uri} start db1"
    assert "db1 started on lc" in job.log and "inventory of lc refreshed" in job.log
    assert _vm(DB1).state == VMState.RUNNING
    assert _live_state(node, DB1) == VMState.RUNNING


def test_start_refuses_a_running_vm(node: Node) -> None:
    with pytest.raises(ValidationError, match="web1 is already running"):
        lifecycle.request_start(_vm(WEB1), actor("alice"))
    assert not Job.objects.exists()


def test_start_of_a_vm_that_started_meanwhile_is_a_no_op(node: Node) -> None:
    job = lifecycle.request_start(_vm(DB1), actor("alice"))
    hv.start_domain(node.uri, DB1, "db1")  # someone was faster, by hand
    job = _run(job)
    assert job.status == JobStatus.SUCCEEDED and "already running; nothing to do" in job.log


def test_offline_disabled_and_vanished_are_refused(node: Node) -> None:
    vm = _vm(DB1)
    Node.objects.filter(pk=node.pk).update(last_error="host:22 is unreachable (timed out).")
    vm.node.refresh_from_db()
    with pytest.raises(ValidationError, match=r"node lc is offline \(host:22 is unreachable"):
        lifecycle.request_start(vm, actor("alice"))
    Node.objects.filter(pk=node.pk).update(last_error="", enabled=False)
    vm.node.refresh_from_db()
    with pytest.raises(ValidationError, match="node lc is disabled"):
        lifecycle.request_start(vm, actor("alice"))
    Node.objects.filter(pk=node.pk).update(
        enabled=True, last_seen=timezone.now() - timedelta(days=1)
    )
    vm.node.refresh_from_db()
    with pytest.raises(ValidationError, match="offline"):
        lifecycle.request_start(vm, actor("alice"))
    never = make_node(name="never")
    with pytest.raises(ValidationError, match="node never is unknown"):
        lifecycle.request_start(make_vm(never, state=VMState.SHUTOFF), actor("alice"))
    Node.objects.filter(pk=node.pk).update(last_seen=timezone.now())
    vm.node.refresh_from_db()
    vm.vanished_at = timezone.now()
    with pytest.raises(ValidationError, match="no longer on lc"):
        lifecycle.request_delete(vm, actor("alice"))
    assert not Job.objects.exists()


def test_second_action_on_a_vm_is_a_conflict(node: Node) -> None:
    first = lifecycle.request_shutdown(_vm(WEB1), actor("alice"))
    with pytest.raises(JobConflict, match=f"web1 already has an active job: job #{first.pk}"):
        lifecycle.request_force_off(_vm(WEB1), actor("bob"))
    assert Job.objects.count() == 1


def test_shutdown_waits_for_shut_off(node: Node) -> None:
    job = _run(lifecycle.request_shutdown(_vm(WEB1), actor("alice"), timeout=30))
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.params == {"timeout": 30}
    assert job.command == f"virsh -c {node.uri} shutdown --mode acpi web1"
    assert _vm(WEB1).state == VMState.SHUTOFF


@pytest.mark.parametrize("bad", [0, -5, "abc", "", 3601, "1.5", None])
def test_shutdown_timeout_is_validated(node: Node, bad: object) -> None:
    with pytest.raises(ValidationError, match="timeout must be a whole number"):
        lifecycle.request_shutdown(_vm(WEB1), actor("alice"), timeout=bad)
    assert not Job.objects.exists()


def test_shutdown_ignored_by_the_guest_fails_and_offers_force_off(node: Node) -> None:
    job = lifecycle.request_shutdown(_vm(WEB1), actor("alice"), timeout=1)
    with mock.patch.object(hv, "_acpi_or_default", autospec=True):
        job = _run(job)
    assert job.status == JobStatus.FAILED
    assert "did not shut down within 1 s" in job.error
    assert "manage.py stopvm --force web1" in job.error and "Force off" in job.error
    assert job.progress_detail["timed_out"] is True
    assert _vm(WEB1).state == VMState.RUNNING  # refreshed: still running, nothing hidden


def test_force_off(node: Node) -> None:
    job = _run(lifecycle.request_force_off(_vm(WEB1), actor("alice")))
    assert job.status == JobStatus.SUCCEEDED and job.command == f"virsh -c {node.uri} destroy web1"
    assert _vm(WEB1).state == VMState.SHUTOFF
    with pytest.raises(ValidationError, match="already shut off"):
        lifecycle.request_force_off(_vm(WEB1), actor("alice"))


def test_reboot(node: Node) -> None:
    job = _run(lifecycle.request_reboot(_vm(WEB1), actor("alice")))
    assert job.status == JobStatus.SUCCEEDED and "reboot --mode acpi web1" in job.command
    with pytest.raises(ValidationError, match="Cannot reboot db1: it is shut off"):
        lifecycle.request_reboot(_vm(DB1), actor("alice"))


def test_handler_reports_a_domain_removed_behind_our_back(node: Node) -> None:
    job = lifecycle.request_start(_vm(DB1), actor("alice"))
    hv.undefine_domain(node.uri, DB1, "db1")
    job = _run(job)
    assert job.status == JobStatus.FAILED
    assert "could not read the state of VM db1: it is no longer defined" in job.error


def test_delete_refuses_a_running_vm_unless_forced_off(node: Node) -> None:
    with pytest.raises(ValidationError, match="web1 is running: shut it down first"):
        lifecycle.request_delete(_vm(WEB1), actor("alice"))
    assert not Job.objects.exists()


def test_delete_forces_off_undefines_deletes_chosen_disks_and_marks_vanished(node: Node) -> None:
    job = lifecycle.request_delete(_vm(WEB1), actor("alice"), disks=["vda"], force_off=True)
    assert job.params["disks"] == [
        {"target": "vda", "path": f"{IMAGES}/web1.qcow2", "pool": "", "volume": ""}
    ]
    job = _run(job)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert "web1 forced off" in job.log and "web1 undefined" in job.log
    assert f"deleted disk vda ({IMAGES}/web1.qcow2)" in job.log
    assert "kept disk(s): vdb" in job.log
    assert "vol-delete --pool default web1.qcow2" in job.log
    assert job.command == f"virsh -c {node.uri} undefine web1"
    paths = _pool_paths(node)
    assert f"{IMAGES}/web1.qcow2" not in paths
    assert {f"{IMAGES}/web1-data.img", f"{IMAGES}/debian.iso"} <= paths
    vm = _vm(WEB1)
    assert vm.vanished_at is not None  # kept with its history, not deleted
    assert vm.jobs.get() == job


def test_delete_of_a_stopped_vm_keeps_disks_by_default(node: Node) -> None:
    job = _run(lifecycle.request_delete(_vm(DB1), actor("alice")))
    assert job.status == JobStatus.SUCCEEDED
    assert f"{IMAGES}/db1.qcow2" in _pool_paths(node)
    assert _vm(DB1).vanished_at is not None


def test_delete_a_volume_disk_by_pool_and_name(node: Node) -> None:
    job = _run(
        lifecycle.request_delete(_vm(WEB1), actor("alice"), disks=["vdb", "vda"], force_off=True)
    )
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert not {f"{IMAGES}/web1.qcow2", f"{IMAGES}/web1-data.img"} & _pool_paths(node)


@pytest.mark.parametrize(
    "disk",
    [
        "sda",  # the CD-ROM: an ISO shared by everyone
        f"{IMAGES}/db1.qcow2",  # a path, not a target
        "vdz",  # not a disk of this VM
        "../../etc/passwd",
        "vda; rm -rf /",
    ],
)
def test_delete_accepts_only_the_vms_own_disk_targets(node: Node, disk: str) -> None:
    with pytest.raises(ValidationError, match="is not a deletable disk of web1"):
        lifecycle.request_delete(_vm(WEB1), actor("alice"), disks=[disk], force_off=True)
    assert not Job.objects.exists()


def test_delete_refuses_a_disk_changed_since_the_request(node: Node) -> None:
    vm = _vm(DB1)
    job = lifecycle.request_delete(vm, actor("alice"), disks=["vda"])
    Job.objects.filter(pk=job.pk).update(
        params={"force_off": False, "disks": [{"target": "vda", "path": f"{IMAGES}/x.qcow2"}]}
    )
    job = _run(job)
    assert job.status == JobStatus.FAILED and "changed since the delete was requested" in job.error
    assert _live_state(node, DB1) == VMState.SHUTOFF  # still defined
    assert f"{IMAGES}/db1.qcow2" in _pool_paths(node)


def test_delete_refuses_a_disk_outside_every_pool_before_changing_anything(node: Node) -> None:
    job = _run(lifecycle.request_delete(_vm(STRAY), actor("alice"), disks=["vda"]))
    assert job.status == JobStatus.FAILED
    assert "not a volume of any storage pool" in job.error
    assert _live_state(node, STRAY) == VMState.SHUTOFF  # not undefined


def test_delete_refuses_a_disk_another_vm_uses(node: Node) -> None:
    job = _run(lifecycle.request_delete(_vm(SHARE1), actor("alice"), disks=["vda"]))
    assert job.status == JobStatus.FAILED
    assert f"{IMAGES}/shared.qcow2 is used by share2" in job.error
    assert _live_state(node, SHARE1) == VMState.SHUTOFF


def test_delete_job_refuses_a_vm_that_started_meanwhile(node: Node) -> None:
    job = lifecycle.request_delete(_vm(DB1), actor("alice"))
    hv.start_domain(node.uri, DB1, "db1")
    job = _run(job)
    assert job.status == JobStatus.FAILED and "db1 is running" in job.error
    assert _live_state(node, DB1) == VMState.RUNNING


def test_find_vm_by_name_uuid_and_node(node: Node) -> None:
    assert lifecycle.find_vm("web1").uuid == _vm(WEB1).uuid
    assert lifecycle.find_vm(WEB1).name == "web1"
    other = make_node(name="lc2")
    make_vm(other, name="web1")  # libvirt names are per node: a second web1 elsewhere
    with pytest.raises(ValidationError, match=r"Several VMs are named 'web1' \(on lc, lc2\)"):
        lifecycle.find_vm("web1")
    assert lifecycle.find_vm("web1", node="lc2").node == other
    for bad in ["a;b", "$(reboot)", "x" * 64, "../etc", "wеb1", "with space", "'q'"]:
        with pytest.raises(ValidationError, match=r"not allowed|must not contain"):
            lifecycle.find_vm(bad)
    with pytest.raises(ValidationError, match="No VM named 'nope'"):
        lifecycle.find_vm("nope")
    with pytest.raises(ValidationError, match="No VM with UUID"):
        lifecycle.find_vm("99999999-9999-4999-8999-999999999999")


def test_allowed_actions_follow_the_stored_state(node: Node) -> None:
    assert lifecycle.allowed_actions(_vm(WEB1)) == {"shutdown", "reboot", "force_off", "delete"}
    assert lifecycle.allowed_actions(_vm(DB1)) == {"start", "delete"}
    vm = _vm(DB1)
    vm.vanished_at = timezone.now()
    assert lifecycle.allowed_actions(vm) == set()


def test_shutdown_of_a_paused_vm_is_refused(node: Node) -> None:
    VirtualMachine.objects.filter(uuid=WEB1).update(state=VMState.PAUSED)
    with pytest.raises(ValidationError, match="cannot react to the ACPI power button"):
        lifecycle.request_shutdown(_vm(WEB1), actor("alice"))
    assert lifecycle.request_force_off(_vm(WEB1), actor("alice")).kind == JobKind.FORCE_OFF
