from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from nodes.models import Node
from nodes.services import registry
from tests.support.factories import actor, make_node, make_vm


@pytest.mark.django_db
def test_add_node_saves_and_derives_migration_address() -> None:
    node = registry.add_node(actor=actor(), name="n1", uri="qemu+ssh://root@127.0.0.1:2222/system")
    assert node.effective_migration_address == "127.0.0.1"
    node.migration_address = "100.64.0.2"
    assert node.effective_migration_address == "100.64.0.2"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "uri"),
    [
        ("bad;name", "test:///default"),
        ("ok", "qemu+ssh://root@host|x/system"),
        ("ok", "qemu+ssh://root@no-such-host.invalid/system"),
        ("ok", "ftp://host/system"),
        ("ok", "qemu+ssh://root@127.0.0.1:99999/system"),
    ],
)
def test_bad_input_saves_nothing(name: str, uri: str) -> None:
    with pytest.raises(ValidationError):
        registry.add_node(actor=actor(), name=name, uri=uri)
    assert Node.objects.count() == 0


@pytest.mark.django_db
def test_duplicate_name_and_uri_are_refused() -> None:
    registry.add_node(actor=actor(), name="n1", uri="test:///default")
    with pytest.raises(ValidationError) as info:
        registry.add_node(actor=actor(), name="n1", uri="test:///other/node.xml")
    assert "name" in info.value.message_dict
    with pytest.raises(ValidationError) as info:
        registry.add_node(actor=actor(), name="n2", uri="test:///default")
    assert "uri" in info.value.message_dict
    assert Node.objects.count() == 1


@pytest.mark.django_db
def test_update_with_bad_uri_changes_nothing() -> None:
    node = make_node(name="n1", uri="test:///default")
    with pytest.raises(ValidationError):
        registry.update_node(node, actor(), uri="qemu+ssh://root@a b/system")
    node.refresh_from_db()
    assert node.uri == "test:///default"


@pytest.mark.django_db
def test_remove_node_drops_its_inventory() -> None:
    node = make_node()
    make_vm(node)
    make_vm(node)
    assert registry.remove_node(node, actor()) == 2
    assert not Node.objects.exists()


@pytest.mark.django_db
def test_addnode_command_reports_errors_and_saves_nothing() -> None:
    with pytest.raises(CommandError) as info:
        call_command("addnode", "n1", "qemu+ssh://root@127.0.0.1:0/system")
    assert "nothing saved" in str(info.value)
    assert "65535" in str(info.value)
    assert not Node.objects.exists()


@pytest.mark.django_db
def test_editnode_and_removenode_commands() -> None:
    call_command("addnode", "n1", "test:///default")
    call_command("editnode", "n1", "--rename", "n2", "--migration-address", "127.0.0.1")
    node = Node.objects.get()
    assert (node.name, node.migration_address) == ("n2", "127.0.0.1")
    with pytest.raises(CommandError):
        call_command("editnode", "n2", "--uri", "qemu+ssh://x@../system")
    call_command("removenode", "n2", "--yes")
    assert not Node.objects.exists()


@pytest.mark.django_db
def test_migration_ssh_port_from_the_commands_and_its_bounds() -> None:
    call_command(
        "addnode", "n1", "qemu+ssh://root@127.0.0.1:2222/system",
        "--migration-address", "localhost", "--migration-ssh-port", "2200",
    )  # fmt: skip
    node = Node.objects.get()
    assert (node.migration_ssh_port, node.peer_path) == (2200, "root@localhost:2200")
    call_command("editnode", "n1", "--migration-ssh-port", "")
    node.refresh_from_db()
    assert (node.migration_ssh_port, node.effective_migration_ssh_port) == (None, 22)
    for bad in ("0", "65536"):
        with pytest.raises(CommandError, match="migration_ssh_port"):
            call_command("editnode", "n1", "--migration-ssh-port", bad)
    with pytest.raises(CommandError, match="must be a port number"):
        call_command("editnode", "n1", "--migration-ssh-port", "ssh")
    node.refresh_from_db()
    assert node.migration_ssh_port is None


@pytest.mark.django_db
def test_node_form_and_pages_show_both_paths(admin_client) -> None:
    response = admin_client.post(
        "/nodes/add/",
        {
            "name": "n1",
            "uri": "qemu+ssh://root@127.0.0.1:2222/system",
            "migration_address": "localhost",
            "migration_ssh_port": "22",
            "virt_type": "auto",
            "enabled": "",
        },
    )
    assert response.status_code == 302, response.content.decode()
    node = Node.objects.get()
    assert (node.migration_ssh_port, node.peer_path) == (22, "root@localhost:22")
    listing = admin_client.get("/nodes/").content.decode()
    assert "<code>root@localhost:22</code>" in listing
    page = admin_client.get(f"/stats/node/{node.pk}/").content.decode()
    assert "manager's path <code>qemu+ssh://root@127.0.0.1:2222/system</code>" in page
    assert "peer path (migration) <code>root@localhost:22</code>" in page
    form = admin_client.get(f"/nodes/{node.pk}/edit/").content.decode()
    assert 'name="migration_ssh_port"' in form
