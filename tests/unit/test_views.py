from __future__ import annotations

from collections.abc import Callable

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from nodes.hypervisor.states import VMState
from nodes.models import Node
from tests.support.factories import make_node, make_vm
from vms.services import inventory


def test_pages_require_login(client: Client, db: None) -> None:
    response = client.get(reverse("vms:vm_list"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


@pytest.mark.django_db
def test_vm_list_shows_nodes_states_and_vnc_links(
    admin_client: Client, node_xml: Callable[..., str]
) -> None:
    node = make_node(name="alpha", uri=node_xml(6))
    inventory.refresh_node(node)
    make_node(name="beta", uri="qemu+ssh://root@127.0.0.1:9/system")
    response = admin_client.get(reverse("vms:vm_list"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "alpha" in html and "beta" in html
    assert 'class="badge online"' in html
    # A local node's consoles are reached through the manager's own host name.
    assert f'href="vnc://{settings.KVMMGR_LOCAL_CONSOLE_HOST}:5900"' in html
    assert html.count('class="vm state-running"') == 4
    assert html.count('class="vm state-shutoff"') == 2


@pytest.mark.django_db
def test_vm_list_makes_no_hypervisor_call_and_constant_queries(admin_client: Client) -> None:
    # Nodes whose URIs point nowhere: rendering must not try to reach them.
    for index in range(5):
        node = make_node(uri=f"qemu+ssh://root@127.0.0.1:{index + 1}/system")
        for _ in range(10):
            make_vm(node, state=VMState.RUNNING, vnc_port=5900)
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse("vms:vm_list"))
    assert response.status_code == 200
    assert response.content.decode().count('href="vnc://127.0.0.1:5900"') == 50
    assert len(queries) <= 6


@pytest.mark.django_db
def test_refresh_is_post_only(admin_client: Client) -> None:
    assert admin_client.get(reverse("vms:refresh_all")).status_code == 405


@pytest.mark.django_db
def test_refresh_requires_csrf(db: None) -> None:
    from django.contrib.auth import get_user_model

    client = Client(enforce_csrf_checks=True)
    client.force_login(get_user_model().objects.create_user("bob"))
    assert client.post(reverse("vms:refresh_all")).status_code == 403


@pytest.mark.django_db
def test_add_node_form_rejects_bad_uri_and_saves_nothing(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("nodes:node_add"),
        {"name": "n1", "uri": "qemu+ssh://root@host;rm -rf /system", "enabled": "on"},
    )
    assert response.status_code == 200
    assert "metacharacters" in response.content.decode() or "spaces" in response.content.decode()
    assert not Node.objects.exists()


@pytest.mark.django_db
def test_add_edit_delete_node_through_pages(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("nodes:node_add"),
        {"name": "n1", "uri": "test:///default", "virt_type": "qemu", "enabled": "on"},
    )
    assert response.status_code == 302
    node = Node.objects.get(name="n1")
    assert node.virt_type == "qemu" and node.effective_virt_type == "qemu"
    response = admin_client.post(
        reverse("nodes:node_edit", args=[node.pk]),
        {
            "name": "n1",
            "uri": "qemu+ssh://root@127.0.0.1:70000/system",
            "virt_type": "auto",
            "enabled": "on",
        },
    )
    assert response.status_code == 200 and "65535" in response.content.decode()
    node.refresh_from_db()
    assert node.uri == "test:///default"
    make_vm(node)
    assert admin_client.get(reverse("nodes:node_delete", args=[node.pk])).status_code == 200
    assert Node.objects.exists()  # GET only asks
    response = admin_client.post(reverse("nodes:node_delete", args=[node.pk]))
    assert response.status_code == 302
    assert not Node.objects.exists()
