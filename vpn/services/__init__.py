"""Tunnels: create, add nodes, bring up/down, read status; validation first, nothing half-applied.

The public operations, re-exported from the modules that hold them, so callers
write ``services.up(...)``: ``tunnels`` (create, add, certificates), ``deploy``
(up, start, stop, restart), ``status`` (refresh, explanations) and ``lookup``.
"""

from vpn.nodectl import VpnError
from vpn.services.deploy import node_files, restart, start, stop, up
from vpn.services.lookup import CONNECT_TIMEOUT, get_member, get_node, server_of
from vpn.services.status import (
    refresh_all,
    refresh_status,
    tunnel_of_address,
    tunnel_problem,
    unreachable_reason,
)
from vpn.services.tunnels import add_client, create_tunnel, renew_certificate, revoke_certificate

__all__ = [
    "CONNECT_TIMEOUT",
    "VpnError",
    "add_client",
    "create_tunnel",
    "get_member",
    "get_node",
    "node_files",
    "refresh_all",
    "refresh_status",
    "renew_certificate",
    "restart",
    "revoke_certificate",
    "server_of",
    "start",
    "stop",
    "tunnel_of_address",
    "tunnel_problem",
    "unreachable_reason",
    "up",
]
