"""nodes.services.links: vpn (registered in VpnConfig.ready()) explains to nodes and vms
which tunnel carries an address and why it is down; without it, messages stay as they are."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nodes.models import Node
from nodes.services import links
from tests.support.factories import make_node
from vms.services import inventory
from vpn.links import TunnelExplainer
from vpn.models import Tunnel


@pytest.fixture
def behind_tunnel(db: None) -> Node:
    """A node whose URI host lies in tunnel t1's subnet; nothing listens there."""
    Tunnel.objects.create(name="t1", subnet="127.77.0.0/24")
    return make_node(name="inner", uri="qemu+ssh://root@127.77.0.3:9/system")


@pytest.fixture
def no_overlay() -> Iterator[None]:
    links.register(None)
    try:
        yield
    finally:
        links.register(TunnelExplainer())


def test_the_inventory_says_vpn_down_for_a_node_behind_a_tunnel(behind_tunnel: Node) -> None:
    result = inventory.refresh_node(behind_tunnel)
    assert not result.ok
    assert result.error.startswith(
        "VPN down: inner is reached through tunnel t1 at 127.77.0.3, which does not answer ("
    ), result.error
    behind_tunnel.refresh_from_db()
    assert behind_tunnel.last_error == result.error


def test_without_an_overlay_app_the_adapters_words_stay(behind_tunnel: Node, no_overlay) -> None:
    result = inventory.refresh_node(behind_tunnel)
    assert not result.ok and "VPN" not in result.error
    assert links.overlay_of("127.77.0.3") == ""
    assert links.link_problem([behind_tunnel]) == ""
    assert links.recorded_problem(behind_tunnel, behind_tunnel) == ""


def test_vpn_names_the_tunnel_of_an_address(behind_tunnel: Node) -> None:
    assert links.overlay_of("127.77.0.3") == "t1"
    assert links.overlay_of("192.0.2.1") == ""
