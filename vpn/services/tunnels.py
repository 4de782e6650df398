"""Defining tunnels: create one, add a node, renew or revoke a member's certificate.

Bad input raises ``ValidationError`` before anything is saved (names, subnets
that overlap another tunnel or a node's networks, a server whose URI host is not
its public endpoint).
"""

from __future__ import annotations

import ipaddress
import logging

from django.core.exceptions import ValidationError
from django.db import transaction

from nodes.hypervisor.errors import HypervisorError
from nodes.models import Node
from nodes.remote import open_remote
from nodes.validators import parse_node_uri, validate_host, validate_node_uri
from vpn import pki
from vpn.choices import MemberRole, TunnelMode, VpnState
from vpn.models import Tunnel, TunnelMember
from vpn.nodectl import VpnError
from vpn.services.deploy import install_server
from vpn.services.lookup import get_member, ipv4_of, server_of
from vpn.services.status import set_state
from vpn.validators import (
    parse_cidr,
    validate_bridge,
    validate_route_cidr,
    validate_tunnel_name,
)

log = logging.getLogger(__name__)


def _check_overlaps(network: ipaddress.IPv4Network, exclude_tunnel: int | None = None) -> None:
    """The tunnel subnet must not hold any node's real address or overlap another tunnel."""
    for other in Tunnel.objects.exclude(pk=exclude_tunnel):
        if parse_cidr(other.subnet).overlaps(network):
            raise ValidationError(
                f"Tunnel subnet {network} overlaps tunnel {other.name} ({other.subnet}).",
                code="subnet_overlap",
            )
    for node in Node.objects.all():
        address = ipv4_of(parse_node_uri(node.uri, resolve=False).host or "")
        if address is not None and address in network:
            raise ValidationError(
                f"Tunnel subnet {network} overlaps the manager's path to node {node.name} "
                f"(the manager reaches it at {address}, inside that subnet); choose another "
                "subnet.",
                code="subnet_overlap",
            )


def _check_uri_host_is_the_server(server: Node) -> None:
    """Without an explicit endpoint, clients connect to the host of the server's URI.

    That host is where the *manager* reaches the node. A URI with its own ssh port
    names a port forward on some other machine (a router), not the node: OpenVPN's
    port is not forwarded with it, and clients would connect to the router.
    """
    parsed = parse_node_uri(server.uri, resolve=False)
    if parsed.port not in (None, 22):
        raise ValidationError(
            f"The manager reaches the server {server.name} through {parsed.host}:"
            f"{parsed.port}, a port forward: that is not where OpenVPN clients find the "
            "node. Give the server endpoint clients connect to (manage.py vpn create … "
            "--endpoint HOST), with its UDP port forwarded there too.",
            code="endpoint_needed",
        )


def _check_node_can_join(node: Node) -> None:
    member = TunnelMember.objects.select_related("tunnel").filter(node=node).first()
    if member is not None:
        what = "the server" if member.is_server else "a client"
        raise ValidationError(
            f"Node {node.name} is already {what} of tunnel {member.tunnel.name}; "
            "a node belongs to one tunnel.",
            code="already_member",
        )


def _check_remote(node: Node, control_uri: str) -> None:
    uri = control_uri or node.uri
    if control_uri:
        validate_node_uri(control_uri)
    if not parse_node_uri(uri, resolve=False).is_remote:
        raise ValidationError(
            f"Node {node.name} ({uri}) is not a qemu+ssh node: kvmmgr installs OpenVPN over ssh.",
            code="not_remote",
        )


def _next_address(tunnel: Tunnel, network: ipaddress.IPv4Network) -> str:
    used = set(tunnel.members.values_list("address", flat=True))
    for host in network.hosts():
        if str(host) not in used:
            return str(host)
    raise ValidationError(f"Tunnel {tunnel.name}'s subnet {network} is full.", code="full")


def create_tunnel(
    *,
    name: str,
    subnet: str,
    server: Node,
    mode: str = TunnelMode.ROUTED,
    port: int = 1194,
    server_endpoint: str = "",
    bridge: str = "",
    mtu: int | None = None,
    manager_network: str = "",
    control_uri: str = "",
) -> Tunnel:
    """Validate everything, then save the tunnel, its server member and the PKI at once."""
    validate_tunnel_name(name)
    if Tunnel.objects.filter(name=name).exists():
        raise ValidationError(f"A tunnel named {name} already exists.", code="duplicate")
    network = parse_cidr(subnet)
    if mode not in TunnelMode.values:
        raise ValidationError(f"Unknown mode {mode!r}: routed or bridged.", code="invalid_mode")
    if not 1 <= int(port) <= 65535:
        raise ValidationError(f"Port {port} is not in 1–65535.", code="invalid_port")
    if mode == TunnelMode.BRIDGED:
        validate_bridge(bridge)
    elif bridge:
        raise ValidationError("A bridge only applies to bridged tunnels.", code="invalid_bridge")
    mtu = mtu or (1400 if mode == TunnelMode.BRIDGED else 1500)
    if not 576 <= mtu <= 9000:
        raise ValidationError(f"MTU {mtu} is not in 576–9000.", code="invalid_mtu")
    if manager_network:
        validate_route_cidr(manager_network)
        if ipaddress.ip_network(manager_network).overlaps(network):
            raise ValidationError(
                f"The manager network {manager_network} overlaps the tunnel subnet {network}.",
                code="subnet_overlap",
            )
    if server_endpoint:
        validate_host(server_endpoint, resolve=False)
        endpoint_ip = ipv4_of(server_endpoint)
        if endpoint_ip is not None and endpoint_ip in network:
            raise ValidationError(
                f"The server endpoint {server_endpoint} lies inside the tunnel subnet.",
                code="subnet_overlap",
            )
    else:
        _check_uri_host_is_the_server(server)
    _check_overlaps(network)
    _check_node_can_join(server)
    _check_remote(server, control_uri)
    with transaction.atomic():
        tunnel = Tunnel.objects.create(
            name=name,
            mode=mode,
            subnet=str(network),
            port=int(port),
            server_endpoint=server_endpoint,
            bridge=bridge,
            mtu=mtu,
            manager_network=manager_network,
        )
        tunnel.full_clean()
        member = TunnelMember.objects.create(
            tunnel=tunnel,
            node=server,
            role=MemberRole.SERVER,
            address=str(next(network.hosts())),
            control_uri=control_uri,
        )
        try:
            _issue(member)
        except Exception:
            pki.remove_tunnel(name)
            raise
    return tunnel


def add_client(tunnel: Tunnel, node: Node, *, control_uri: str = "") -> TunnelMember:
    _check_node_can_join(node)
    _check_remote(node, control_uri)
    network = parse_cidr(tunnel.subnet)
    host = ipv4_of(parse_node_uri(node.uri, resolve=False).host or "")
    if host is not None and host in network and not control_uri:
        raise ValidationError(
            f"Node {node.name} is reached at {host}, inside the tunnel: give a control URI "
            "(an out-of-band ssh path) so the tunnel can be brought up.",
            code="needs_control_uri",
        )
    with transaction.atomic():
        member = TunnelMember.objects.create(
            tunnel=tunnel,
            node=node,
            role=MemberRole.CLIENT,
            address=_next_address(tunnel, network),
            control_uri=control_uri,
        )
        _issue(member)
    return member


def _issue(member: TunnelMember) -> None:
    serial, not_after = pki.issue(member.tunnel.name, member.node.name, server=member.is_server)
    TunnelMember.objects.filter(pk=member.pk).update(cert_serial=serial, cert_not_after=not_after)
    member.cert_serial, member.cert_not_after = serial, not_after


def renew_certificate(node_name: str) -> TunnelMember:
    """Issue a new key and certificate and revoke the old one; run ``up`` to install it."""
    member = get_member(node_name)
    if pki.has_certificate(member.tunnel.name, member.node.name):
        pki.revoke(member.tunnel.name, member.node.name)
    _issue(member)
    return member


def revoke_certificate(node_name: str) -> str:
    """Revoke a node's certificate; the server refuses it from the next handshake on."""
    member = get_member(node_name)
    serial = pki.revoke(member.tunnel.name, member.node.name)
    set_state(member, VpnState.ERROR, f"certificate {serial} revoked; renew it to rejoin")
    server = server_of(member.tunnel)
    if server.pk != member.pk:
        try:
            with open_remote(server.node.name, server.effective_control_uri) as remote:
                install_server(remote, server)
        except (HypervisorError, VpnError) as exc:
            log.warning("could not push the CRL to %s: %s", server.node.name, exc)
    return serial
