from __future__ import annotations

from collections.abc import Callable

import pytest
from django.utils import timezone

from nodes.hypervisor import DomainInfo
from nodes.hypervisor.states import VMState
from nodes.models import Node
from tests.support.factories import make_node
from tests.support.nodexml import make_domains
from vms.models import VirtualMachine
from vms.services import inventory


@pytest.mark.django_db
def test_refresh_records_domains_and_marks_node_online(node_xml: Callable[..., str]) -> None:
    node = make_node(uri=node_xml(30))
    result = inventory.refresh_node(node)
    assert result.ok and result.created == 30
    node.refresh_from_db()
    assert node.is_online and node.status_label == "online"
    assert VirtualMachine.objects.filter(node=node, state=VMState.RUNNING).count() == 20


@pytest.mark.django_db
def test_vanished_domains_are_marked_not_deleted(node_xml: Callable[..., str]) -> None:
    domains = make_domains(5)
    node = make_node(uri=node_xml(domains, name="a"))
    inventory.refresh_node(node)
    # The same node now reports only three domains.
    node.uri = node_xml(domains[:3], name="b")
    node.save()
    result = inventory.refresh_node(node)
    assert result.vanished == 2
    assert VirtualMachine.objects.count() == 5
    assert VirtualMachine.objects.present().count() == 3
    gone = VirtualMachine.objects.get(name=domains[4].name)
    assert gone.vanished_at is not None and gone.vnc_url == ""
    # It comes back: the row is reused.
    node.uri = node_xml(domains, name="c")
    node.save()
    inventory.refresh_node(node)
    assert VirtualMachine.objects.present().count() == 5


@pytest.mark.django_db
def test_unreachable_node_keeps_inventory_and_shows_offline() -> None:
    node = make_node(uri="qemu+ssh://root@127.0.0.1:9/system", last_seen=timezone.now())
    result = inventory.refresh_node(node)
    assert not result.ok
    node.refresh_from_db()
    assert node.status_label == "offline"
    assert "unreachable" in node.last_error


@pytest.mark.django_db
def test_row_follows_an_active_domain_to_another_node() -> None:
    source, destination = make_node(), make_node()
    now = timezone.now()
    domain = DomainInfo(
        "mig", "44444444-4444-4444-4444-444444444444", VMState.RUNNING, 1, 128, True, 5900, ""
    )
    inventory.apply_inventory(source, [domain], observed_at=now)
    paused_copy = DomainInfo(**{**domain.__dict__, "state": VMState.SHUTOFF})
    # An inactive copy on the destination does not steal the running VM's row.
    inventory.apply_inventory(destination, [paused_copy], observed_at=now)
    assert VirtualMachine.objects.get().node == source
    inventory.apply_inventory(destination, [domain], observed_at=now)
    inventory.apply_inventory(source, [], observed_at=now)
    vm = VirtualMachine.objects.get()
    assert vm.node == destination and vm.vanished_at is None


@pytest.mark.django_db
def test_vnc_link_uses_node_address_for_wildcard_listen() -> None:
    node = make_node(uri="qemu+ssh://root@127.0.0.1:2222/system")
    domain = DomainInfo(
        "v", "55555555-5555-5555-5555-555555555555", VMState.RUNNING, 1, 128, True, 5907, "0.0.0.0"
    )
    inventory.apply_inventory(node, [domain], observed_at=timezone.now())
    assert VirtualMachine.objects.get().vnc_url == "vnc://127.0.0.1:5907"
    assert Node.objects.get().is_online is False  # never contacted: not online
