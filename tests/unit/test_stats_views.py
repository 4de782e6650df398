"""Stats pages, JSON endpoints and commands: rendered from the database only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from nodes.hypervisor.states import VMState
from nodes.models import Node
from stats.models import NodeSample, VmSample
from stats.services.retention import run_retention
from tests.support.factories import make_node, make_vm
from vms.models import VirtualMachine

pytestmark = pytest.mark.django_db


def seed(vm: VirtualMachine, node: Node, minutes: int, cpu: float = 40.0) -> None:
    now = timezone.now()
    VmSample.objects.bulk_create(
        VmSample(vm=vm, node=node, at=now - timedelta(seconds=5 * i), cpu_pct=cpu, mem_pct=30.0)
        for i in range(minutes * 12)
    )
    NodeSample.objects.bulk_create(
        NodeSample(node=node, at=now - timedelta(seconds=5 * i), cpu_pct=10.0, running_vms=1)
        for i in range(minutes * 12)
    )


def test_vm_list_gets_spark_cells_and_one_json_for_all_sparklines(
    admin_client: Client, django_assert_max_num_queries: Callable[..., object]
) -> None:
    node = make_node(last_seen=timezone.now())
    running = [make_vm(node) for _ in range(20)]
    make_vm(node, state=VMState.SHUTOFF)
    for vm in running:
        seed(vm, node, minutes=1)
    page = admin_client.get(reverse("vms:vm_list"))
    assert page.status_code == 200
    body = page.content.decode()
    assert body.count('class="spark" data-uuid=') == 20
    assert "js/sparklines.js" in body
    with django_assert_max_num_queries(4):  # session, user, samples (joined with VMs)
        data = admin_client.get(reverse("stats:sparklines")).json()
    assert len(data["vms"]) == 20
    line = data["vms"][str(running[0].uuid)]
    assert line["cpu"][-1] == 40.0 and line["mem"][-1] == 30.0
    assert len(line["t"]) <= 31


def test_vm_series_json_for_each_range(admin_client: Client) -> None:
    node = make_node()
    vm = make_vm(node)
    seed(vm, node, minutes=10)
    url = reverse("stats:vm_series", args=[vm.uuid])
    raw = admin_client.get(url, {"range": "1h"}).json()
    assert raw["range"] == "1h" and len(raw["t"]) == 120
    assert raw["cpu_pct"][0] == 40.0
    run_retention()
    day = admin_client.get(url, {"range": "24h"}).json()
    assert day["resolution"] == 60
    # Minute rollups, then the raw samples newer than the last rollup: up to now.
    assert 10 <= len(day["t"]) < 120
    assert day["t"] == sorted(day["t"])
    assert day["cpu_pct_max"][0] == 40.0
    for key in ("7d", "30d"):
        assert admin_client.get(url, {"range": key}).status_code == 200
    assert admin_client.get(url, {"range": "2y"}).status_code == 400


def test_vm_detail_and_node_pages_have_charts(admin_client: Client) -> None:
    node = make_node()
    vm = make_vm(node)
    detail = admin_client.get(reverse("vms:vm_detail", args=[vm.uuid])).content.decode()
    assert "vendor/uplot/uPlot.iife.min.js" in detail
    assert reverse("stats:vm_series", args=[vm.uuid]) in detail
    assert "//cdn" not in detail and "https://" not in detail
    page = admin_client.get(reverse("stats:node_stats", args=[node.pk]))
    assert page.status_code == 200
    assert reverse("stats:node_series", args=[node.pk]) in page.content.decode()
    seed(vm, node, minutes=1)
    data = admin_client.get(reverse("stats:node_series", args=[node.pk])).json()
    assert data["running_vms"][0] == 1.0


def test_stats_requires_login() -> None:
    response = Client().get(reverse("stats:sparklines"))
    assert response.status_code in {302, 401, 403}


def test_stats_command_prints_recent_figures() -> None:
    node = make_node(name="n1")
    vm = make_vm(node, name="web1")
    seed(vm, node, minutes=1, cpu=12.5)
    out = StringIO()
    call_command("stats", "web1", "--since", "2m", stdout=out)
    text = out.getvalue()
    assert "web1" in text and "raw samples" in text
    assert "12.5" in text and "n1" in text


def test_samplestats_once_and_prunestats(node_xml: Callable[..., str]) -> None:
    from vms.services.inventory import refresh_node

    node = make_node(name="tn", uri=node_xml(3))
    refresh_node(node)
    out = StringIO()
    call_command("samplestats", "tn", "--once", stdout=out)
    assert "tn: 2 VM samples" in out.getvalue()
    out = StringIO()
    call_command("prunestats", stdout=out)
    assert "rolled up" in out.getvalue()
