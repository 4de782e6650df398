"""Sampling cycles: the real adapter on libvirt's test driver, and crafted snapshots."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from django.utils import timezone

from nodes.hypervisor import HostCounters, NodeCounters, close_all, node_stats
from nodes.hypervisor.stats import parse_domain_record
from nodes.models import Node
from stats.models import NodeSample, SamplingCursor, VmSample
from stats.services.sampling import record_snapshot, sample_node
from stats.tasks import online_node_ids
from tests.support.factories import make_node, make_vm
from vms.models import VirtualMachine
from vms.services.inventory import refresh_node

pytestmark = pytest.mark.django_db

HOST = HostCounters(cpus=8, memory_total_kib=16 * 1048576)


def snapshot(at: float, cpu_by_uuid: dict[str, float]) -> NodeCounters:
    domains = [
        parse_domain_record(
            uuid,
            f"vm-{uuid[:4]}",
            {
                "state.state": 1,
                "cpu.time": int(cpu_s * 1e9),
                "vcpu.current": 1,
                "balloon.current": 524288,
                "balloon.rss": 131072,
            },
        )
        for uuid, cpu_s in cpu_by_uuid.items()
    ]
    return NodeCounters(taken_at=at, host=HOST, domains=domains)


def online(node: Node) -> Node:
    Node.objects.filter(pk=node.pk).update(last_seen=timezone.now(), last_attempt_at=timezone.now())
    node.refresh_from_db()
    return node


def test_test_driver_node_is_sampled_with_one_bulk_call(node_xml: Callable[..., str]) -> None:
    node = make_node(uri=node_xml(6))
    refresh_node(node)
    result = sample_node(node)
    assert result.ok
    running = VirtualMachine.objects.filter(node=node, state="running").count()
    assert result.samples == running == 4
    # The test driver reports only the state group: gauges and rates are gaps, not zeros.
    assert set(VmSample.objects.values_list("cpu_pct", flat=True)) == {None}
    summary = NodeSample.objects.get(node=node)
    assert summary.running_vms == 4
    assert summary.mem_total_mib > 0
    assert SamplingCursor.objects.filter(node=node).exists()
    counters = node_stats(node.uri)
    assert len(counters.domains) == 4  # active domains only


def test_two_cycles_give_rates_and_one_bulk_insert(
    django_assert_max_num_queries: Callable[..., object],
) -> None:
    node = make_node()
    vms = [make_vm(node) for _ in range(50)]
    uuids = [str(vm.uuid) for vm in vms]
    record_snapshot(node, snapshot(1000.0, dict.fromkeys(uuids, 10.0)))
    with django_assert_max_num_queries(10):
        result = record_snapshot(node, snapshot(1005.0, dict.fromkeys(uuids, 10.5)))
    assert result.samples == 50
    latest = VmSample.objects.filter(vm=vms[0]).order_by("-at").first()
    assert latest is not None
    assert latest.cpu_pct == pytest.approx(10.0)
    assert latest.mem_used_mib == 128
    node_row = NodeSample.objects.filter(node=node).order_by("-at").first()
    assert node_row is not None
    assert node_row.cpu_pct == pytest.approx(62.5)  # 50 guests × 0.1 CPU over 8 host CPUs


def test_restart_between_cycles_leaves_a_gap() -> None:
    node = make_node()
    vm = make_vm(node)
    record_snapshot(node, snapshot(1000.0, {str(vm.uuid): 300.0}))
    record_snapshot(node, snapshot(1005.0, {str(vm.uuid): 0.5}))
    record_snapshot(node, snapshot(1010.0, {str(vm.uuid): 1.5}))
    cpu = list(VmSample.objects.filter(vm=vm).order_by("at").values_list("cpu_pct", flat=True))
    assert cpu[0] is None and cpu[1] is None
    assert cpu[2] == pytest.approx(20.0)
    assert all(value is None or value >= 0 for value in cpu)


def test_a_stale_cursor_is_not_used_for_rates() -> None:
    node = make_node()
    vm = make_vm(node)
    record_snapshot(node, snapshot(1000.0, {str(vm.uuid): 10.0}))
    record_snapshot(node, snapshot(1000.0 + 3600, {str(vm.uuid): 20.0}))
    cpu = VmSample.objects.filter(vm=vm).order_by("-at").values_list("cpu_pct", flat=True)[0]
    assert cpu is None


def test_vm_migrating_between_cycles_keeps_one_history() -> None:
    source, destination = make_node(name="src"), make_node(name="dst")
    vm = make_vm(source)
    key = str(vm.uuid)
    record_snapshot(source, snapshot(1000.0, {key: 10.0}))
    record_snapshot(source, snapshot(1005.0, {key: 11.0}))
    # Migrated: the inventory moves the row; the destination's qemu counts afresh.
    VirtualMachine.objects.filter(pk=vm.pk).update(node=destination)
    record_snapshot(source, snapshot(1010.0, {}))
    record_snapshot(destination, snapshot(1010.5, {key: 0.2}))
    record_snapshot(destination, snapshot(1015.5, {key: 0.7}))
    rows = list(VmSample.objects.filter(vm=vm).order_by("at").values_list("node__name", "cpu_pct"))
    assert [name for name, _ in rows] == ["src", "src", "dst", "dst"]
    assert rows[1][1] == pytest.approx(20.0)
    assert rows[2][1] is None  # first sample on the new node: no previous counters there
    assert rows[3][1] == pytest.approx(10.0)


def test_unknown_domains_and_non_running_ones_are_skipped() -> None:
    node = make_node()
    vm = make_vm(node)
    snap = snapshot(1000.0, {str(vm.uuid): 1.0, "11111111-2222-4333-8444-555555555555": 1.0})
    paused = parse_domain_record(str(make_vm(node).uuid), "paused", {"state.state": 3})
    snap.domains.append(paused)
    assert record_snapshot(node, snap).samples == 1


def test_node_going_offline_mid_cycle_writes_nothing_and_spares_the_others(
    node_xml: Callable[..., str],
) -> None:
    good = online(make_node(uri=node_xml(3, name="good")))
    refresh_node(good)
    gone = online(make_node(uri=node_xml(3, name="gone")))
    refresh_node(gone)
    # The host disappears between the inventory refresh and the sampling cycle.
    Path(gone.uri.removeprefix("test://")).unlink()
    close_all()
    assert set(online_node_ids()) == {good.pk, gone.pk}
    results = {node.name: sample_node(node) for node in (gone, good)}
    assert not results[gone.name].ok and results[gone.name].error
    assert results[good.name].ok and results[good.name].samples == 2
    assert not NodeSample.objects.filter(node=gone).exists()
    assert not VmSample.objects.filter(node=gone).exists()


def test_offline_and_disabled_nodes_are_not_fanned_out() -> None:
    fresh = online(make_node())
    make_node()  # never seen
    disabled = online(make_node(enabled=False))
    assert online_node_ids() == [fresh.pk]
    assert disabled.pk not in online_node_ids()
