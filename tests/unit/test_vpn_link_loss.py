"""A migration between tunnel members that breaks is explained by the tunnel's state."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodes.hypervisor.errors import HypervisorError
from nodes.models import Node
from tests.support.factories import make_node
from vms.services.migration.links import explain_link_loss
from vpn import services
from vpn.choices import VpnState
from vpn.models import TunnelMember


@pytest.fixture(autouse=True)
def vpn_dir(tmp_path: Path, settings: object) -> Path:
    settings.KVMMGR_VPN_DIR = tmp_path / "vpn"  # type: ignore[attr-defined]
    return tmp_path / "vpn"


@pytest.fixture
def members(db: None) -> tuple[Node, Node]:
    """Tunnel t1 with server nat1 and client nat2, whose control paths refuse at once."""
    server = make_node(name="nat1", uri="qemu+ssh://root@127.0.0.1:9/system")
    client = make_node(name="nat2", uri="qemu+ssh://root@127.0.0.2:9/system")
    tunnel = services.create_tunnel(
        name="t1", subnet="100.64.0.0/24", server=server, server_endpoint="198.51.100.11"
    )
    services.add_client(tunnel, client)
    Node.objects.filter(pk=server.pk).update(migration_address="100.64.0.1")
    server.refresh_from_db()
    return server, client


def test_a_broken_migration_towards_a_tunnel_member_names_the_tunnel(members) -> None:
    server, client = members
    failure = HypervisorError("operation failed: job 'migration out' failed", uri=client.uri)
    explained = explain_link_loss(failure, client, server)
    assert explained.message.startswith("VPN down: tunnel t1 is in error on nat1 ("), explained
    assert "The migration to nat1 at 100.64.0.1 broke (operation failed" in explained.message
    assert explained.message.endswith("the VM stays on nat2.")
    assert explained.retryable
    # The members' fresh state was stored on the way (the VPN page shows it too).
    assert TunnelMember.objects.get(node=server).state == VpnState.ERROR


def test_a_migration_outside_any_tunnel_keeps_libvirts_words(members) -> None:
    server, client = members
    Node.objects.filter(pk=server.pk).update(migration_address="")
    server.refresh_from_db()
    failure = HypervisorError("operation failed: job 'migration out' failed")
    assert explain_link_loss(failure, client, server) is failure
