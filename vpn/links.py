"""The VPN's answers to nodes.services.links: which tunnel carries an address, and why it
is down. Registered by ``VpnConfig.ready()``; the words come from vpn.services.status."""

from __future__ import annotations

from collections.abc import Sequence

from nodes.models import Node
from nodes.services.links import OverlayExplainer
from vpn.services import status


class TunnelExplainer(OverlayExplainer):
    def overlay_of(self, address: str) -> str:
        return status.tunnel_of_address(address)

    def unreachable_reason(self, node: Node, message: str) -> str:
        return status.unreachable_reason(node, message)

    def link_problem(self, nodes: Sequence[Node]) -> str:
        return status.tunnel_problem(list(nodes))

    def recorded_problem(self, source: Node, dest: Node) -> str:
        return status.recorded_tunnel_problem(source, dest)
