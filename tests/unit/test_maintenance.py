"""Node maintenance: a node in maintenance takes no new VMs and
no migrations, is marked wherever nodes are listed, and every change is audited."""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jobs.models import Job
from kvmmgr.access import Actor
from kvmmgr.models import AuditEntry
from nodes.hypervisor.states import VMState
from nodes.models import Node
from nodes.services import registry
from tests.support.factories import make_node, make_vm
from vms.forms.create import create_form
from vms.forms.migrate import migration_options
from vms.services.migration.request import request_migration

pytestmark = pytest.mark.django_db


def _online(name: str, address: str) -> Node:
    node = make_node(name=name, uri=f"qemu+ssh://root@{address}/system")
    Node.objects.filter(pk=node.pk).update(last_seen=timezone.now(), last_error="")
    node.refresh_from_db()
    return node


def test_a_node_in_maintenance_is_no_destination_and_says_how_to_end_it() -> None:
    source, dest = _online("n1", "198.51.100.11"), _online("n2", "198.51.100.12")
    vm = make_vm(source, name="web", state=VMState.RUNNING)
    registry.set_maintenance(dest, Actor.system("admin"), True, "kernel upgrade")
    with pytest.raises(ValidationError) as refused:
        request_migration(vm, dest, migration_options({}), Actor.system("admin"))
    message = " ".join(refused.value.messages)
    assert "n2 is in maintenance (kernel upgrade)" in message
    assert "manage.py maintenance n2 off" in message
    assert not Job.objects.exists()
    with pytest.raises(ValidationError, match="in maintenance"):
        create_form(node=dest, name="new", vcpus=1, memory_mib=128, media="pxe").job_params()
    registry.set_maintenance(dest, Actor.system("admin"), False)
    job = request_migration(vm, dest, migration_options({}), Actor.system("admin"))
    assert job.pk
    actions = list(
        AuditEntry.objects.filter(action__startswith="node.maintenance")
        .order_by("at")
        .values_list("action", "result")
    )
    assert actions == [("node.maintenance.on", "ok"), ("node.maintenance.off", "ok")]


def test_the_command_and_only_admins(operator_client: Client, admin_client: Client) -> None:
    node = _online("n1", "198.51.100.11")
    out = io.StringIO()
    call_command("maintenance", "n1", "on", "--reason", "disk swap", stdout=out)
    assert "n1 is in maintenance since" in out.getvalue()
    node.refresh_from_db()
    assert node.in_maintenance and node.maintenance_reason == "disk swap"
    with pytest.raises(CommandError, match="no node named"):
        call_command("maintenance", "nope", "on")
    url = reverse("nodes:node_maintenance", args=[node.pk])
    assert operator_client.post(url, {"state": "off"}).status_code == 403
    node.refresh_from_db()
    assert node.in_maintenance
    # Marked in the node list, the VM list and the create form.
    make_vm(node, name="web", state=VMState.RUNNING)
    for page in (reverse("nodes:node_list"), reverse("vms:vm_list")):
        assert "badge maintenance" in admin_client.get(page).content.decode()
    assert admin_client.post(url, {"state": "off"}).status_code == 302
    node.refresh_from_db()
    assert not node.in_maintenance and node.maintenance_reason == ""
