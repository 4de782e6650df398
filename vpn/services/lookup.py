"""Finding the rows a VPN action works on: a node, its membership, its tunnel's server."""

from __future__ import annotations

import ipaddress

from django.core.exceptions import ValidationError

from nodes.models import Node
from vpn.models import Tunnel, TunnelMember

#: How long ``up`` waits for a client to report CONNECTED before rolling back.
CONNECT_TIMEOUT = 20.0


def get_node(name: str) -> Node:
    node = Node.objects.filter(name=name).first()
    if node is None:
        raise ValidationError(f"There is no node named {name!r}.", code="unknown_node")
    return node


def get_member(node: Node | str) -> TunnelMember:
    node = get_node(node) if isinstance(node, str) else node
    member = TunnelMember.objects.select_related("tunnel", "node").filter(node=node).first()
    if member is None:
        raise ValidationError(f"Node {node.name} is in no tunnel.", code="not_a_member")
    return member


def server_of(tunnel: Tunnel) -> TunnelMember:
    server = tunnel.server
    if server is None:
        raise ValidationError(f"Tunnel {tunnel.name} has no server.", code="no_server")
    return server


def ipv4_of(host: str) -> ipaddress.IPv4Address | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return address if isinstance(address, ipaddress.IPv4Address) else None
