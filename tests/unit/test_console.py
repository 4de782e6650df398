"""Consoles: the browser console's one-time tickets, and the native client's page."""

from __future__ import annotations

import json
import time

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from kvmmgr.models import AuditEntry
from nodes.hypervisor.states import VMState
from tests.support.factories import make_node, make_vm
from vms import vncsecret
from vms.models import ConsoleTicket, VirtualMachine
from vms.services import console_tickets
from vms.services.console_tickets import TicketRefused, redeem

URI = "qemu+ssh://root@198.51.100.254:2222/system"
ORIGIN = "http://testserver"


def _vm(**fields: object) -> VirtualMachine:
    node = make_node(uri=URI)
    values: dict[str, object] = {
        "name": "web",
        "state": VMState.RUNNING,
        "vnc_port": 5901,
        "vnc_listen": "127.0.0.1",
        "vnc_password_sealed": vncsecret.seal("s3cret-pw"),
    }
    values.update(fields)
    return make_vm(node, **values)


def _ticket(client: Client, vm: VirtualMachine) -> dict[str, str]:
    response = client.post(reverse("vms:vm_console_ticket", args=[vm.uuid]))
    assert response.status_code == 200, response.content
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    return json.loads(response.content)


def _redeem(token: str, client: Client, **overrides: object) -> console_tickets.ConsoleTarget:
    values: dict[str, object] = {
        "session_key": client.session.session_key,
        "remote_user": None,
        "origin": ORIGIN,
        "host": "testserver",
    }
    values.update(overrides)
    return redeem(token, **values)  # type: ignore[arg-type]


@pytest.mark.django_db
def test_the_list_links_the_browser_console_not_a_loopback_vnc_address(
    admin_client: Client,
) -> None:
    vm = _vm()
    listing = admin_client.get(reverse("vms:vm_list")).content.decode()
    assert reverse("vms:vm_console", args=[vm.uuid]) in listing
    # The display listens on the node's loopback: no vnc:// link that cannot work.
    assert "vnc://" not in listing
    page = admin_client.get(reverse("vms:vm_console", args=[vm.uuid])).content.decode()
    assert 'type="module"' in page and "js/console.js" in page
    assert reverse("vms:vm_console_ticket", args=[vm.uuid]) in page
    assert "s3cret-pw" not in page  # the password comes with a ticket, by POST


@pytest.mark.django_db
def test_a_ticket_opens_one_connection_to_the_vms_node(admin_client: Client) -> None:
    vm = _vm()
    body = _ticket(admin_client, vm)
    assert body["password"] == "s3cret-pw" and body["vm"] == "web"
    stored = ConsoleTicket.objects.get()
    assert body["token"] not in stored.token_hash and len(stored.token_hash) == 64
    target = _redeem(body["token"], admin_client)
    assert (target.host, target.port, target.node_uri) == ("127.0.0.1", 5901, URI)
    assert target.through_ssh and target.user.get_username() == "alice"
    with pytest.raises(TicketRefused, match="already used"):
        _redeem(body["token"], admin_client)
    assert AuditEntry.objects.filter(action="vm.console.ticket", target="web").exists()


@pytest.mark.django_db
def test_the_console_follows_the_vm_to_its_new_node(admin_client: Client) -> None:
    vm = _vm()
    token = _ticket(admin_client, vm)["token"]
    other = make_node(uri="qemu+ssh://root@198.18.0.12/system")
    VirtualMachine.objects.filter(pk=vm.pk).update(node=other, vnc_port=5907)
    target = _redeem(token, admin_client)
    assert (target.node_uri, target.port) == ("qemu+ssh://root@198.18.0.12/system", 5907)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"origin": "https://evil.example"}, "another site"),
        ({"origin": None}, "Origin missing"),
        ({"session_key": "someone-elses-session"}, "another login session"),
        ({"remote_user": "mallory"}, "another user than mallory"),
    ],
)
def test_a_foreign_connection_is_refused_and_spends_the_ticket(
    admin_client: Client, overrides: dict[str, object], reason: str
) -> None:
    token = _ticket(admin_client, _vm())["token"]
    with pytest.raises(TicketRefused, match=reason):
        _redeem(token, admin_client, **overrides)
    with pytest.raises(TicketRefused, match="already used"):
        _redeem(token, admin_client)


@pytest.mark.django_db
def test_expired_unknown_and_missing_tickets_are_refused(
    admin_client: Client, settings: object
) -> None:
    settings.KVMMGR_CONSOLE_TICKET_SECONDS = 1  # type: ignore[attr-defined]
    token = _ticket(admin_client, _vm())["token"]
    time.sleep(1.1)
    with pytest.raises(TicketRefused, match="expired"):
        _redeem(token, admin_client)
    with pytest.raises(TicketRefused, match="unknown"):
        _redeem("not-a-ticket", admin_client)
    with pytest.raises(TicketRefused, match="no console ticket"):
        _redeem("", admin_client)


@pytest.mark.django_db
def test_a_demoted_user_or_a_stopped_vm_gets_no_connection(admin_client: Client) -> None:
    vm = _vm()
    token = _ticket(admin_client, vm)["token"]
    VirtualMachine.objects.filter(pk=vm.pk).update(state=VMState.SHUTOFF)
    with pytest.raises(TicketRefused, match="not running"):
        _redeem(token, admin_client)
    VirtualMachine.objects.filter(pk=vm.pk).update(state=VMState.RUNNING)
    token = _ticket(admin_client, vm)["token"]
    from kvmmgr.models import UserRole

    admin = User.objects.get(username="alice")
    UserRole.objects.update_or_create(user=admin, defaults={"role": "viewer"})
    with pytest.raises(TicketRefused, match="may no longer open consoles"):
        _redeem(token, admin_client)


@pytest.mark.django_db
def test_viewers_get_neither_page_nor_ticket(viewer_client: Client) -> None:
    vm = _vm()
    listing = viewer_client.get(reverse("vms:vm_list")).content.decode()
    assert "vnc://" not in listing and reverse("vms:vm_console", args=[vm.uuid]) not in listing
    assert viewer_client.get(reverse("vms:vm_console", args=[vm.uuid])).status_code == 403
    response = viewer_client.post(reverse("vms:vm_console_ticket", args=[vm.uuid]))
    assert response.status_code == 403 and "s3cret-pw" not in response.content.decode()
    assert not ConsoleTicket.objects.exists()


@pytest.mark.django_db
def test_a_stopped_vm_or_a_test_driver_vm_gets_no_ticket(admin_client: Client) -> None:
    vm = _vm(state=VMState.SHUTOFF)
    response = admin_client.post(reverse("vms:vm_console_ticket", args=[vm.uuid]))
    assert response.status_code == 409 and "no VNC console" in response.json()["error"]
    demo = make_vm(make_node(), name="demo", state=VMState.RUNNING, vnc_port=5900)
    response = admin_client.post(reverse("vms:vm_console_ticket", args=[demo.uuid]))
    assert response.status_code == 409 and "test driver" in response.json()["error"]
    assert admin_client.get(reverse("vms:vm_console_ticket", args=[vm.uuid])).status_code == 405


@pytest.mark.django_db
def test_native_client_page_shows_the_ssh_tunnel_through_the_port_forward(
    admin_client: Client,
) -> None:
    vm = _vm()
    url = reverse("vms:vm_console_native", args=[vm.uuid])
    assert admin_client.get(url).status_code == 405
    response = admin_client.post(url)
    page = response.content.decode()
    assert response.status_code == 200 and "s3cret-pw" in page
    assert "ssh -p 2222 -N -L 5901:127.0.0.1:5901 root@198.51.100.254" in page
    assert "vnc://" not in page
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    assert AuditEntry.objects.filter(action="vm.console", target="web").exists()


@pytest.mark.django_db
def test_a_display_on_a_network_address_keeps_its_vnc_link(admin_client: Client) -> None:
    vm = _vm(vnc_listen="198.51.100.20")
    listing = admin_client.get(reverse("vms:vm_list")).content.decode()
    assert "vnc://198.51.100.20:5901" in listing
    assert _redeem(_ticket(admin_client, vm)["token"], admin_client).host == "198.51.100.20"
