"""The lab's WAN emulation really shapes the NAT router's outside link (tests/lab/wan.py).

Functional checks with loose bounds, not performance tests: a 20 Mbit/s profile
must bring one TCP stream through the router well below the unshaped path and
not above the token rate (plus its burst), both ways; the delay relay must add
at least its delay each way to the UDP flow it relays.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.lab import nat, wan
from tests.lab.lab import Lab
from tests.lab.node import LabNode

MIB = 1024 * 1024


@pytest.fixture
def nat_pair(lab: Lab) -> Iterator[tuple[LabNode, LabNode]]:
    """``vpn1`` outside, ``nat2`` behind the router; the router unshaped afterwards."""
    pair = nat.add_public_node(lab, "vpn1"), nat.add_nat_node(lab, "nat2")
    try:
        yield pair
    finally:
        wan.clear()


def test_rate_profile_caps_tcp_through_the_router_both_ways(
    nat_pair: tuple[LabNode, LabNode],
) -> None:
    outside, inside = nat_pair
    unshaped = wan.tcp_rate(outside.netns, inside.netns, outside.address, 8 * MIB,
                            listener_sends=False)  # fmt: skip
    profile = wan.Profile("test20", 20)
    wan.apply(profile)
    limit = profile.rate_mbit * 1_000_000 / 8
    upload = wan.tcp_rate(outside.netns, inside.netns, outside.address, 4 * MIB,
                          listener_sends=False)  # fmt: skip
    download = wan.tcp_rate(outside.netns, inside.netns, outside.address, 4 * MIB,
                            listener_sends=True)  # fmt: skip
    print(
        f"unshaped {unshaped / MIB:.1f} MiB/s; 20 Mbit/s profile: upload "
        f"{upload / MIB:.2f} MiB/s, download {download / MIB:.2f} MiB/s"
    )
    for rate in (upload, download):
        # Above: only the bucket's burst (5 ms) and the queue (50 ms) on top of 4 MiB.
        assert rate <= 1.15 * limit
        assert rate >= 0.3 * limit
    assert unshaped > 2 * limit
    stats = wan.tc_stats()
    assert stats[wan.OUTSIDE_DEV]["bytes"] >= 4 * MIB
    assert stats[wan.INSIDE_BRIDGE]["bytes"] >= 4 * MIB
    wan.clear()
    assert wan.tc_stats() == {}


def test_delay_relay_delays_the_udp_flow_each_way(nat_pair: tuple[LabNode, LabNode]) -> None:
    outside, inside = nat_pair
    port = 5302
    wan.apply(wan.Profile("test-delay", 100, delay_ms=25), udp_server=(outside.address, port))
    relay = wan.relay_pid()
    assert relay is not None
    rtts = wan.udp_rtts(outside.netns, inside.netns, outside.address, port, count=5)
    print("RTTs through the relay (ms):", [round(r * 1000, 1) for r in rtts])
    assert min(rtts) >= 0.050
    wan.clear()
    assert wan.relay_pid() is None
