from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.management import call_command
from django.test import override_settings

from nodes.models import Node
from nodes.services import registry
from tests.support.eager import eager_tasks
from tests.support.factories import actor, make_node
from vms import inventory_tasks as tasks
from vms.models import VirtualMachine


@pytest.mark.django_db
def test_refresh_node_task_loads_row_and_refreshes(node_xml: Callable[..., str]) -> None:
    node = make_node(uri=node_xml(4))
    tasks.refresh_node(node.pk)
    assert VirtualMachine.objects.filter(node=node).count() == 4


@pytest.mark.django_db
def test_refresh_node_task_skips_disabled_and_missing_nodes(node_xml: Callable[..., str]) -> None:
    node = make_node(uri=node_xml(4), enabled=False)
    tasks.refresh_node(node.pk)
    tasks.refresh_node(999_999)
    assert not VirtualMachine.objects.exists()


@pytest.mark.django_db(transaction=True)
@override_settings(CELERY_TASK_ALWAYS_EAGER=True)
def test_refresh_all_fans_out_one_task_per_enabled_node(node_xml: Callable[..., str]) -> None:
    with eager_tasks():
        good = make_node(uri=node_xml(3, name="good"))
        unreachable = make_node(uri="qemu+ssh://root@127.0.0.1:9/system")
        make_node(uri=node_xml(2, name="off"), enabled=False)
        assert tasks.refresh_all_nodes() == 2
    good.refresh_from_db()
    unreachable.refresh_from_db()
    assert good.status_label == "online"
    assert unreachable.status_label == "offline" and "unreachable" in unreachable.last_error
    assert VirtualMachine.objects.count() == 3


@pytest.mark.django_db
def test_refreshnodes_now_command(node_xml: Callable[..., str], capsys) -> None:
    make_node(name="n1", uri=node_xml(2))
    call_command("refreshnodes", "n1", "--now")
    assert "2 domains" in capsys.readouterr().out
    assert Node.objects.get().last_seen is not None


@pytest.mark.django_db(transaction=True)
def test_adding_a_node_refreshes_its_inventory_through_the_registry_hook(
    node_xml: Callable[..., str],
) -> None:
    # nodes' registry cannot import vms: the refresh goes through nodes.services.hooks.
    with eager_tasks():
        node = registry.add_node(actor=actor(), name="fresh", uri=node_xml(2, name="fresh"))
    node.refresh_from_db()
    assert node.status_label == "online"
    assert VirtualMachine.objects.filter(node=node).count() == 2
