"""What the tunnels are doing: members' state from their nodes, and why a link is down.

Also the words other apps show when a node or a peer path is reached through a
tunnel that is not up.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.utils import timezone

from nodes.hypervisor.errors import HypervisorError
from nodes.models import Node
from nodes.remote import open_remote
from nodes.validators import parse_node_uri
from vpn import nodectl, pki
from vpn.choices import VpnState
from vpn.models import Tunnel, TunnelMember
from vpn.nodectl import VpnError
from vpn.services.lookup import ipv4_of, server_of
from vpn.validators import (
    parse_cidr,
)


def set_state(member: TunnelMember, state: str, reason: str, **fields: object) -> None:
    TunnelMember.objects.filter(pk=member.pk).update(
        state=state, state_reason=reason, state_at=timezone.now(), **fields
    )


def refresh_status(member: TunnelMember) -> TunnelMember:
    """Ask the node's management interface and store state, peers and byte counters."""
    tunnel = member.tunnel
    try:
        password = pki.credentials(tunnel.name, member.node.name).mgmt_password
        with open_remote(member.node.name, member.effective_control_uri) as remote:
            status = nodectl.status(remote, tunnel.name, password)
    except (HypervisorError, VpnError, ValidationError) as exc:
        message = exc.message if hasattr(exc, "message") else str(exc)
        set_state(member, VpnState.ERROR, str(message))
    else:
        if status is None:
            set_state(member, VpnState.DOWN, "OpenVPN is not running", peers=[])
        elif member.is_server:
            peers = [peer.as_json() for peer in status.peers]
            set_state(
                member,
                VpnState.UP,
                f"{len(peers)} client(s) connected",
                peers=peers,
                bytes_in=status.bytes_in,
                bytes_out=status.bytes_out,
            )
        else:
            server = server_of(tunnel)
            connected = status.state == "CONNECTED"
            peers = (
                [
                    {
                        "name": server.node.name,
                        "real_address": status.remote_address,
                        "tunnel_address": server.address,
                    }
                ]
                if connected
                else []
            )
            set_state(
                member,
                VpnState.UP if connected else VpnState.CONNECTING,
                f"OpenVPN state {status.state or 'unknown'}",
                peers=peers,
                bytes_in=status.bytes_in,
                bytes_out=status.bytes_out,
            )
    member.refresh_from_db()
    return member


def refresh_all() -> list[TunnelMember]:
    return [refresh_status(m) for m in TunnelMember.objects.select_related("tunnel", "node")]


def unreachable_reason(node: Node, message: str) -> str:
    """Explain a failed contact with a node that is reached through a tunnel.

    A node whose URI host lies in a tunnel subnet can only be reached while that
    tunnel is up, so its failure is reported as "VPN down" with the tunnel named.
    """
    host = ipv4_of(parse_node_uri(node.uri, resolve=False).host or "")
    if host is None:
        return message
    for tunnel in Tunnel.objects.all():
        if host in parse_cidr(tunnel.subnet):
            return (
                f"VPN down: {node.name} is reached through tunnel {tunnel.name} at {host}, "
                f"which does not answer ({message})"
            )
    return message


def tunnel_of_address(address: str) -> str:
    """The name of the tunnel whose subnet holds ``address``, or ''."""
    ip = ipv4_of(address)
    if ip is None:
        return ""
    for tunnel in Tunnel.objects.all():
        if ip in parse_cidr(tunnel.subnet):
            return tunnel.name
    return ""


_STATE_WORDS = {
    VpnState.DOWN: "down",
    VpnState.CONNECTING: "still connecting",
    VpnState.ERROR: "in error",
    VpnState.UNKNOWN: "in an unknown state",
}


def tunnel_problem(nodes: list[Node]) -> str:
    """Why the tunnel joining these nodes is not usable right now, or '' when it is.

    Asked after a migration between tunnel members failed: each member's state is
    read afresh from its management interface (through its control path), and
    the first member that is not up, or a server that no longer lists the other
    nodes as connected peers, is named.
    """
    members = list(TunnelMember.objects.select_related("tunnel", "node").filter(node__in=nodes))
    for member in sorted(members, key=lambda m: not m.is_server):
        fresh = refresh_status(member)
        if fresh.state != VpnState.UP:
            return (
                f"VPN down: tunnel {member.tunnel.name} is {_STATE_WORDS[fresh.state]} on "
                f"{member.node.name} ({fresh.state_reason})"
            )
        if fresh.is_server:
            connected = {peer.get("name") for peer in fresh.peers}
            for other in members:
                if other.tunnel_id == fresh.tunnel_id and not other.is_server:
                    if other.node.name not in connected:
                        return (
                            f"VPN down: {other.node.name} is not connected to tunnel "
                            f"{fresh.tunnel.name} (server {fresh.node.name})"
                        )
    return ""


def recorded_tunnel_problem(source: Node, dest: Node) -> str:
    """Why the tunnel carrying ``dest``'s peer path is not usable as last recorded, or ""
    (no tunnel, or both members up). An evacuation plans with it from the database alone;
    the migration's own pre-check asks the nodes."""
    name = tunnel_of_address(dest.effective_migration_address)
    if not name:
        return ""
    members = {
        m.node_id: m
        for m in TunnelMember.objects.filter(tunnel__name=name, node__in=[source, dest])
    }
    for node in (source, dest):
        member = members.get(node.pk)
        if member is None:
            return f"{node.name} is not in tunnel {name}, which carries {dest.name}'s peer path"
        if member.state != VpnState.UP:
            return (
                f"tunnel {name} was last seen {member.state} on {node.name} "
                f"(manage.py vpn status reads it again)"
            )
    return ""
