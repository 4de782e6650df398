"""Counters → figures, on crafted getAllDomainStats records (no libvirt needed)."""

from __future__ import annotations

import pytest

from nodes.hypervisor.states import VMState
from nodes.hypervisor.stats import HostCounters, parse_domain_record
from stats.services.rates import counters_of, node_figures, rate, vm_figures

UUID = "0b7a5cde-0000-4000-8000-000000000001"


def record(cpu_s: float = 10.0, **extra: object) -> dict[str, object]:
    """A running domain's record shaped like a real node's (two disks, one NIC)."""
    raw: dict[str, object] = {
        "state.state": 1,
        "state.reason": 1,
        "cpu.time": int(cpu_s * 1e9),
        "cpu.user": 1,
        "cpu.system": 1,
        "vcpu.current": 2,
        "vcpu.maximum": 2,
        "balloon.current": 1048576,
        "balloon.maximum": 1048576,
        "balloon.rss": 262144,
        "block.count": 2,
        "block.0.name": "vda",
        "block.0.rd.bytes": 1000,
        "block.0.wr.bytes": 2000,
        "block.0.rd.reqs": 10,
        "block.0.wr.reqs": 20,
        "block.1.name": "sda",
        "block.1.rd.bytes": 500,
        "block.1.rd.reqs": 5,
        "net.count": 1,
        "net.0.name": "vnet0",
        "net.0.rx.bytes": 4096,
        "net.0.tx.bytes": 8192,
    }
    raw.update(extra)
    return raw


def test_parse_sums_devices_and_uses_rss_for_memory() -> None:
    counters = parse_domain_record(UUID, "web", record())
    assert counters.state == VMState.RUNNING
    assert counters.cpu_time_ns == 10_000_000_000
    assert counters.vcpus == 2
    assert counters.block_rd_bytes == 1500  # both disks
    assert counters.block_wr_bytes == 2000  # sda reports no writes: not counted as 0 error
    assert counters.block_rd_reqs == 15
    assert counters.net_rx_bytes == 4096
    assert counters.memory_used_kib == 262144
    assert counters.memory_total_kib == 1048576


def test_parse_prefers_the_guests_own_memory_view() -> None:
    raw = record(**{"balloon.available": 1000000, "balloon.usable": 600000})
    counters = parse_domain_record(UUID, "web", raw)
    assert counters.memory_used_kib == 400000
    assert counters.memory_total_kib == 1000000


def test_missing_groups_stay_none() -> None:
    counters = parse_domain_record(UUID, "bare", {"state.state": 1})
    assert counters.state == VMState.RUNNING
    assert counters.cpu_time_ns is None
    assert counters.block_rd_bytes is None
    assert counters.net_rx_bytes is None
    assert counters.memory_used_kib is None
    figures = vm_figures(counters, None, 5.0, fallback_vcpus=1)
    assert set(figures.values()) == {None}


def test_memory_falls_back_to_the_balloon_size() -> None:
    raw = {"state.state": 1, "balloon.current": 524288}
    counters = parse_domain_record(UUID, "noballoonstats", raw)
    assert counters.memory_used_kib == 524288
    figures = vm_figures(counters, None, 5.0, fallback_vcpus=1)
    assert figures["mem_used_mib"] == 512
    assert figures["mem_pct"] == 100


def test_cpu_percent_is_normalised_by_vcpus() -> None:
    before = parse_domain_record(UUID, "web", record(cpu_s=10.0))
    after = parse_domain_record(
        UUID, "web", record(cpu_s=15.0, **{"block.0.rd.bytes": 11000, "net.0.tx.bytes": 18192})
    )
    figures = vm_figures(after, counters_of(before), 5.0, fallback_vcpus=1)
    # 5 s of CPU time in 5 s of wall time on 2 vCPUs: half the VM's capacity.
    assert figures["cpu_pct"] == pytest.approx(50.0)
    assert figures["disk_rd_bps"] == pytest.approx(2000.0)  # 10,000 bytes in 5 s
    assert figures["net_tx_bps"] == pytest.approx(2000.0)
    assert figures["disk_wr_bps"] == 0.0
    assert figures["mem_pct"] == pytest.approx(25.0)


def test_a_counter_that_goes_backwards_is_a_new_series_not_a_negative_spike() -> None:
    before = parse_domain_record(UUID, "web", record(cpu_s=500.0))
    # The VM restarted (or migrated): its new qemu process counts from zero.
    after = parse_domain_record(UUID, "web", record(cpu_s=1.0, **{"block.0.rd.bytes": 10}))
    figures = vm_figures(after, counters_of(before), 5.0, fallback_vcpus=1)
    assert figures["cpu_pct"] is None
    assert figures["disk_rd_bps"] is None
    assert figures["net_rx_bps"] == 0.0  # this counter did not go back: still a rate
    assert figures["mem_used_mib"] == 256  # a gauge, no previous value needed


def test_rate_edges() -> None:
    assert rate(10, 5, 0.0) is None
    assert rate(None, 5, 1.0) is None
    assert rate(5, None, 1.0) is None
    assert rate(4, 5, 1.0) is None
    assert rate(15, 5, 2.0) == 5.0


def test_cpu_percent_is_capped_at_100() -> None:
    before = parse_domain_record(UUID, "web", record(cpu_s=10.0))
    after = parse_domain_record(UUID, "web", record(cpu_s=21.0))
    assert vm_figures(after, counters_of(before), 5.0, fallback_vcpus=1)["cpu_pct"] == 100.0


def test_node_figures_from_host_counters_else_guests() -> None:
    host = HostCounters(
        cpus=4,
        memory_total_kib=8 * 1048576,
        cpu_busy_ns=3_000,
        cpu_total_ns=10_000,
        memory_free_kib=6 * 1048576,
    )
    running = [parse_domain_record(UUID, "web", record())]
    figures = node_figures(host, [1_000, 2_000], running, guest_cpu_ns_per_s=None)
    assert figures["cpu_pct"] == pytest.approx(25.0)  # 2,000 busy of 8,000
    assert figures["mem_used_mib"] == 2048
    assert figures["mem_pct"] == pytest.approx(25.0)
    assert figures["running_vms"] == 1
    # A driver without host counters: the guests' CPU over the host's CPUs, their memory.
    bare = HostCounters(cpus=4, memory_total_kib=8 * 1048576)
    figures = node_figures(bare, None, running, guest_cpu_ns_per_s=2e9)
    assert figures["cpu_pct"] == pytest.approx(50.0)
    assert figures["mem_used_mib"] == 1024
