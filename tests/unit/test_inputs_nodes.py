"""Nodes and maintenance: ``NodeForm`` and ``MaintenanceForm`` are the one input schema
of the node pages, ``addnode``/``editnode``/``maintenance`` and the API."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from kvmmgr.access import Actor
from kvmmgr.api import tokens
from kvmmgr.api.serializers import MaintenanceSerializer, NodeInputSerializer
from kvmmgr.inputs.cli import flag_of
from kvmmgr.models import AuditEntry
from nodes.forms import MaintenanceForm, NodeForm
from nodes.models import Node
from tests.conftest import make_user
from tests.support.factories import make_node

pytestmark = pytest.mark.django_db


def _api() -> APIClient:
    new = tokens.create(Actor.system("admin"), make_user("api-admin", "admin"), "ci")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {new.key}")
    return client


def _flags(command: str) -> set[str]:
    parser = load_command_class("nodes", command).create_parser("manage.py", command)
    return {s for action in parser._actions for s in action.option_strings}


def _inputs(page: str) -> set[str]:
    return set(re.findall(r'name="([a-z_]+)"', page))


def test_node_flags_page_inputs_and_api_fields_are_the_forms(admin_client: Client) -> None:
    names = set(NodeForm.base_fields)
    generated = {flag_of(n) for n in names - {"name", "uri", "enabled"}}
    assert generated | {"--disabled"} <= _flags("addnode")
    assert generated | {"--rename", "--uri", "--enable", "--disable"} <= _flags("editnode")
    assert set(NodeInputSerializer().fields) == names
    assert names <= _inputs(admin_client.get("/nodes/add/").content.decode())
    port = NodeInputSerializer().fields["migration_ssh_port"]
    assert (port.min_value, port.max_value) == (1, 65535)
    assert set(NodeInputSerializer().fields["virt_type"].choices) == {"auto", "kvm", "qemu"}


def test_maintenance_flags_page_inputs_and_api_fields_are_the_form(admin_client: Client) -> None:
    node = make_node(name="n1", uri="test:///default")
    assert "--reason" in _flags("maintenance")
    assert set(MaintenanceSerializer().fields) == set(MaintenanceForm.base_fields)
    page = admin_client.get(f"/nodes/{node.pk}/edit/").content.decode()
    assert {"reason", "state"} <= _inputs(page)
    assert 'maxlength="200"' in page


@pytest.mark.parametrize(
    ("flags", "field", "value", "message"),
    [
        (["--migration-ssh-port", "ssh"], "migration_ssh_port", "ssh", "must be a port number"),
        (["--migration-ssh-port", "0"], "migration_ssh_port", "0", "must be a port number"),
        (["--migration-address", "a b"], "migration_address", "a b", "not a valid"),
    ],
)
def test_bad_node_input_gets_the_same_message_everywhere(
    admin_client: Client, flags: list[str], field: str, value: str, message: str
) -> None:
    node = make_node(name="n1", uri="test:///default")
    with pytest.raises(CommandError) as cli:
        call_command("editnode", "n1", *flags)
    assert message in str(cli.value)
    cli_text = str(cli.value).split(f"{field}: ", 1)[1]
    base = {"name": "n1", "uri": "test:///default", "virt_type": "auto", "enabled": "on"}
    page = admin_client.post(f"/nodes/{node.pk}/edit/", {**base, field: value})
    assert page.status_code == 200 and cli_text in html.unescape(page.content.decode())
    response = _api().patch(f"/api/v1/nodes/{node.pk}/", {field: value}, format="json")
    assert response.status_code == 400 and response.json()["fields"] == {field: [cli_text]}
    with pytest.raises(CommandError) as cli:
        call_command("addnode", "n2", "test:///other.xml", *flags)
    assert cli_text in str(cli.value)
    assert list(Node.objects.values_list("name", "migration_address", "migration_ssh_port")) == [
        ("n1", "", None)
    ]


def test_enabled_left_out_is_yes_but_an_unchecked_box_is_no(admin_client: Client) -> None:
    api = _api()
    call_command("addnode", "cli", "test:///cli.xml")
    assert api.post("/api/v1/nodes/", {"name": "api", "uri": "test:///api.xml"}).status_code
    admin_client.post("/nodes/add/", {"name": "page", "uri": "test:///page.xml"})
    enabled = dict(Node.objects.values_list("name", "enabled"))
    assert enabled == {"cli": True, "api": True, "page": False}
    call_command("editnode", "cli", "--disable")
    api.patch(f"/api/v1/nodes/{Node.objects.get(name='api').pk}/", {"enabled": False}, "json")
    assert not Node.objects.filter(enabled=True).exists()


def test_a_refused_node_is_audited_with_its_reasons(admin_client: Client) -> None:
    admin_client.post("/nodes/add/", {"name": "bad name!", "uri": "test:///default"})
    entry = AuditEntry.objects.get(action="node.add")
    assert entry.result == "refused" and "not allowed" in entry.detail
    assert not Node.objects.exists()


@pytest.mark.parametrize(
    ("cli", "page", "body", "message"),
    [
        (["--reason", "x" * 201], {"reason": "x" * 201}, {"on": True, "reason": "x" * 201},
         "At most 200 characters."),
    ],
)  # fmt: skip
def test_bad_maintenance_input_gets_the_same_message_everywhere(
    admin_client: Client, cli: list[str], page: dict[str, Any], body: dict[str, Any], message: str
) -> None:
    node = make_node(name="n1", uri="test:///default", last_seen=timezone.now())
    with pytest.raises(CommandError, match=message):
        call_command("maintenance", "n1", "on", *cli)
    url = f"/nodes/{node.pk}/maintenance/"
    shown = admin_client.post(url, {"state": "on", **page}, follow=True).content.decode()
    assert message in shown
    api = _api()
    response = api.post(f"/api/v1/nodes/{node.pk}/maintenance/", body, format="json")
    assert response.status_code == 400 and response.json()["fields"] == {"reason": [message]}
    response = api.post(f"/api/v1/nodes/{node.pk}/maintenance/", {"on": "maybe"}, "json")
    assert response.status_code == 400 and response.json()["fields"] == {"on": ["true or false."]}
    node.refresh_from_db()
    assert not node.in_maintenance
