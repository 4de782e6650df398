"""The migration reconciler against libvirt's test driver: both nodes are asked."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from jobs.choices import JobStatus
from jobs.models import Job
from nodes.hypervisor import storage as hv_storage
from nodes.models import Node
from tests.support.factories import make_node, make_vm
from tests.support.nodexml import RUNSTATE_PAUSED, RUNSTATE_SHUTOFF, FakeDomain
from vms.choices import JobKind
from vms.models import VirtualMachine
from vms.services import reconcile

UUID = "66666666-6666-6666-6666-666666666666"


def _job(vm: VirtualMachine, dest: Node, status: str, **params: object) -> Job:
    return Job.objects.create(
        kind=JobKind.MIGRATE,
        status=status,
        vm=vm,
        node=vm.node,
        target_name=vm.name,
        lock_key=f"vm:{vm.uuid}",
        params={"destination_id": dest.pk, **params},
    )


@pytest.mark.django_db
def test_leftover_volume_is_removed_once_the_destination_answers(
    node_xml: Callable[..., str],
) -> None:
    source = make_node(name="src", uri=node_xml([FakeDomain("web", UUID)], name="src"))
    dest = make_node(name="dst", uri=node_xml([], name="dst"))
    vm = make_vm(source, name="web", uuid=UUID)
    volume = hv_storage.create_volume(dest.uri, "default", "web.qcow2", 1 << 20, "qcow2")
    job = _job(
        vm,
        dest,
        JobStatus.FAILED,
        created_volumes=[{"pool": "default", "name": "web.qcow2", "path": volume.path}],
    )
    assert reconcile.pending_jobs() == [job]
    found = reconcile.reconcile_all()[job.pk]
    assert found == "src: running; dst: absent"
    assert hv_storage.find_volume(dest.uri, "default", "web.qcow2") is None
    job.refresh_from_db()
    assert job.params["reconciled"] and job.params["created_volumes"][0]["removed"]
    assert "cleanup: removed" in job.log
    assert reconcile.pending_jobs() == []


@pytest.mark.django_db
def test_a_migration_that_finished_after_its_worker_died_is_marked_succeeded(
    node_xml: Callable[..., str],
) -> None:
    source = make_node(name="src", uri=node_xml([], name="src"))
    dest = make_node(name="dst", uri=node_xml([FakeDomain("web", UUID)], name="dst"))
    vm = make_vm(source, name="web", uuid=UUID)
    job = _job(
        vm,
        dest,
        JobStatus.FAILED,
        worker_died=True,
        created_volumes=[
            {"pool": "default", "name": "web.qcow2", "path": "/var/lib/libvirt/images/web.qcow2"}
        ],
    )
    reconcile.reconcile(job)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.error == ""
    assert "completed after its worker stopped" in job.log
    vm.refresh_from_db()
    assert vm.node == dest


@pytest.mark.django_db
def test_unreachable_destination_is_retried_later(node_xml: Callable[..., str]) -> None:
    source = make_node(name="src", uri=node_xml([FakeDomain("web", UUID)], name="src"))
    dest = make_node(name="dst", uri="qemu+ssh://root@127.0.0.1:9/system")
    vm = make_vm(source, name="web", uuid=UUID)
    job = _job(
        vm,
        dest,
        JobStatus.ABORTED,
        created_volumes=[{"pool": "default", "name": "web.qcow2", "path": "/x/web.qcow2"}],
    )
    assert reconcile.reconcile(job).startswith("not yet:")
    job.refresh_from_db()
    assert not job.params.get("reconciled")
    assert reconcile.pending_jobs() == [job]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("runstate", "status", "said"),
    [
        (RUNSTATE_PAUSED, JobStatus.SUCCEEDED, "arrived paused on dst; resumed it"),
        (RUNSTATE_SHUTOFF, JobStatus.FAILED, "web is on dst now and gone from src, but it is"),
    ],
)
def test_a_migration_that_finished_alone_is_reported_whatever_state_it_arrived_in(
    node_xml: Callable[..., str], runstate: int, status: str, said: str
) -> None:
    """Source empty, destination holds the VM (paused or shut off): it moved; the
    reconciler says so, resumes a paused arrival, and never removes its disks."""
    source = make_node(name="src", uri=node_xml([], name="src"))
    dest = make_node(name="dst", uri=node_xml([FakeDomain("web", UUID, runstate)], name="dst"))
    vm = make_vm(source, name="web", uuid=UUID)
    volume = hv_storage.create_volume(dest.uri, "default", "web.qcow2", 1 << 20, "qcow2")
    job = _job(
        vm,
        dest,
        JobStatus.FAILED,
        worker_died=True,
        orphan_checked=True,
        created_volumes=[{"pool": "default", "name": "web.qcow2", "path": volume.path}],
    )
    reconcile.reconcile(job)
    job.refresh_from_db()
    assert job.status == status and said in job.log, job.log
    assert "did not complete" not in job.log
    assert hv_storage.find_volume(dest.uri, "default", "web.qcow2") is not None
    assert reconcile.pending_jobs() == []
    vm.refresh_from_db()
    assert vm.node == dest
