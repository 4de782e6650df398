"""startvm, stopvm, rebootvm, deletevm: --wait, --json, and clear errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from jobs.choices import JobStatus
from jobs.models import Job
from nodes.hypervisor import connection_for
from nodes.hypervisor import lifecycle as hv
from nodes.hypervisor.states import VMState
from nodes.models import Node
from tests.support.eager import eager_tasks
from tests.support.factories import make_node, make_vm
from tests.support.lifecyclehost import DB1, IMAGES, WEB1, make_lifecycle_node
from vms.choices import JobKind
from vms.models import VirtualMachine


@pytest.fixture
def node(tmp_path: Path, db: None) -> Node:
    return make_lifecycle_node(tmp_path)


@pytest.fixture
def eager_worker() -> Iterator[None]:
    """Jobs run at submit time, as a worker would (needs a transactional test)."""
    with eager_tasks():
        yield


def _state(uuid: str) -> VMState:
    return VirtualMachine.objects.get(uuid=uuid).state


@pytest.mark.django_db
def test_startvm_without_wait_queues_and_says_how_to_follow(node: Node, capsys) -> None:
    call_command("startvm", "db1")
    out = capsys.readouterr().out
    job = Job.objects.get()
    assert f"queued job {job.pk}: start db1" in out and f"manage.py job {job.pk}" in out
    assert job.requested_by.startswith("cli")


@pytest.mark.django_db
def test_stopvm_json(node: Node, capsys) -> None:
    call_command("stopvm", "web1", "--json", "--timeout", "30")
    data = json.loads(capsys.readouterr().out)
    assert (data["kind"], data["status"], data["target"]) == ("shutdown", "queued", "web1")
    assert Job.objects.get().params == {"timeout": 30}


@pytest.mark.django_db(transaction=True)
def test_lifecycle_through_the_commands_with_wait(node: Node, eager_worker: None, capsys) -> None:
    call_command("startvm", "db1", "--wait")
    assert "succeeded" in capsys.readouterr().out and _state(DB1) == VMState.RUNNING
    call_command("rebootvm", "db1", "--wait")
    call_command("stopvm", "db1", "--wait", "--timeout", "10")
    assert _state(DB1) == VMState.SHUTOFF
    capsys.readouterr()
    call_command("stopvm", "--force", "web1", "--wait", "--json")
    data = json.loads(capsys.readouterr().out)
    assert (data["kind"], data["status"]) == ("force_off", "succeeded")
    assert _state(WEB1) == VMState.SHUTOFF
    call_command("deletevm", WEB1, "--delete-disks", "--wait")
    assert VirtualMachine.objects.get(uuid=WEB1).vanished_at is not None
    with connection_for(node.uri) as conn:
        left = {v.path() for v in conn.storagePoolLookupByName("default").listAllVolumes()}
    assert not {f"{IMAGES}/web1.qcow2", f"{IMAGES}/web1-data.img"} & left
    assert f"{IMAGES}/debian.iso" in left  # the CD-ROM's ISO is never a VM's own disk
    assert [j.status for j in Job.objects.order_by("pk")] == [JobStatus.SUCCEEDED] * 5


@pytest.mark.django_db(transaction=True)
def test_wait_exits_non_zero_when_the_job_fails(node: Node, eager_worker: None) -> None:
    hv.undefine_domain(node.uri, DB1, "db1")  # gone behind the manager's back
    with pytest.raises(CommandError, match=r"failed: could not read the state of VM db1"):
        call_command("startvm", "db1", "--wait")


@pytest.mark.django_db
def test_deletevm_with_chosen_disk_and_force_off(node: Node) -> None:
    call_command("deletevm", "web1", "--disk", "vdb", "--force-off")
    job = Job.objects.get()
    assert job.kind == JobKind.DELETE and job.params["force_off"] is True
    assert [d["target"] for d in job.params["disks"]] == ["vdb"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["startvm", "a;b"], "not allowed"),
        (["startvm", "$(reboot)"], "not allowed"),
        (["startvm", "../etc"], r"not allowed|must not contain"),
        (["startvm", "x" * 65], "not allowed"),
        (["startvm", "nope"], "No VM named 'nope'"),
        (["startvm", "web1"], "web1 is already running"),
        (["stopvm", "web1", "--timeout", "0"], "--timeout must be from 1 to 3600"),
        (["stopvm", "db1"], "db1 is already shut off"),
        (["rebootvm", "db1"], "Cannot reboot db1"),
        (["deletevm", "web1"], "web1 is running: shut it down first"),
        (["deletevm", "web1", "--force-off", "--disk", "sda"], "not a deletable disk"),
        (["deletevm", "web1", "--force-off", "--disk", "/etc/passwd"], "not a deletable disk"),
        (["startvm", "db1", "--node", "a;b"], "Node name 'a;b' is not allowed"),
    ],
)
def test_bad_input_is_a_clear_command_error(node: Node, argv: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command(*argv)
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_conflict_and_ambiguity_are_command_errors(node: Node) -> None:
    call_command("startvm", "db1")
    with pytest.raises(CommandError, match="db1 already has an active job"):
        call_command("deletevm", "db1")
    other = make_node(name="other", last_seen=timezone.now())
    make_vm(other, name="db1", state=VMState.SHUTOFF)
    with pytest.raises(CommandError, match="give --node or the UUID"):
        call_command("rebootvm", "db1")
    call_command("startvm", "db1", "--node", "other")
    assert Job.objects.count() == 2
