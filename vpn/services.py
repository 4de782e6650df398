"""Tunnels: create, add nodes, bring up/down, read status; validation first, nothing half-applied.

Bad input raises ``django.core.exceptions.ValidationError`` before anything is
saved; failures on nodes raise :class:`~vpn.nodectl.VpnError` after every file
that ``up`` wrote has been put back.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from nodes.hypervisor.errors import HypervisorError
from nodes.models import Node
from nodes.remote import RemoteNode, open_remote
from nodes.validators import parse_node_uri, validate_host, validate_node_uri
from vpn import nodectl, pki, render
from vpn.choices import MemberRole, TunnelMode, VpnState
from vpn.models import Tunnel, TunnelMember
from vpn.nodectl import VpnError
from vpn.validators import (
    parse_cidr,
    validate_bridge,
    validate_route_cidr,
    validate_tunnel_name,
)

log = logging.getLogger(__name__)

#: How long ``up`` waits for a client to report CONNECTED before rolling back.
CONNECT_TIMEOUT = 20.0

__all__ = ["VpnError"]


# -- lookups -------------------------------------------------------------------


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


def _server(tunnel: Tunnel) -> TunnelMember:
    server = tunnel.server
    if server is None:
        raise ValidationError(f"Tunnel {tunnel.name} has no server.", code="no_server")
    return server


# -- validation ------------------------------------------------------------------


def _ip(host: str) -> ipaddress.IPv4Address | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return address if isinstance(address, ipaddress.IPv4Address) else None


def _check_overlaps(network: ipaddress.IPv4Network, exclude_tunnel: int | None = None) -> None:
    """The tunnel subnet must not hold any node's real address or overlap another tunnel."""
    for other in Tunnel.objects.exclude(pk=exclude_tunnel):
        if parse_cidr(other.subnet).overlaps(network):
            raise ValidationError(
                f"Tunnel subnet {network} overlaps tunnel {other.name} ({other.subnet}).",
                code="subnet_overlap",
            )
    for node in Node.objects.all():
        address = _ip(parse_node_uri(node.uri, resolve=False).host or "")
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


# -- creating ----------------------------------------------------------------------


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
        endpoint_ip = _ip(server_endpoint)
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
    host = _ip(parse_node_uri(node.uri, resolve=False).host or "")
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
    _set_state(member, VpnState.ERROR, f"certificate {serial} revoked; renew it to rejoin")
    server = _server(member.tunnel)
    if server.pk != member.pk:
        try:
            with open_remote(server.node.name, server.effective_control_uri) as remote:
                _install_server(remote, server)
        except (HypervisorError, VpnError) as exc:
            log.warning("could not push the CRL to %s: %s", server.node.name, exc)
    return serial


# -- up / down ---------------------------------------------------------------------


def _files(member: TunnelMember) -> list[render.NodeFile]:
    tunnel = member.tunnel
    creds = pki.credentials(tunnel.name, member.node.name)
    if member.is_server:
        clients = list(tunnel.members.filter(role=MemberRole.CLIENT).select_related("node"))
        return render.server_files(tunnel, member, creds, clients)
    return render.client_files(tunnel, member, creds, _server(tunnel))


def _install_server(remote: RemoteNode, server: TunnelMember) -> nodectl.Backup:
    return nodectl.install(remote, _files(server))


def _check_node_networks(remote: RemoteNode, member: TunnelMember) -> None:
    """Refuse a tunnel subnet that overlaps a network the node really has."""
    network = parse_cidr(member.tunnel.subnet)
    for iface, cidr in nodectl.addresses(remote):
        if iface == member.tunnel.device or cidr.split("/")[0] == member.address:
            continue
        if ipaddress.ip_interface(cidr).network.overlaps(network):
            raise ValidationError(
                f"Tunnel subnet {network} overlaps {member.node.name}'s own network "
                f"{ipaddress.ip_interface(cidr).network} on {iface}.",
                code="subnet_overlap",
            )


def _wait_connected(remote: RemoteNode, member: TunnelMember, timeout: float) -> None:
    password = pki.credentials(member.tunnel.name, member.node.name).mgmt_password
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        status = nodectl.status(remote, member.tunnel.name, password)
        if status is None:
            logfile = nodectl.paths.log_file(member.tunnel.name)
            raise VpnError(f"{member.node.name}: OpenVPN exited; see {logfile} on the node")
        state = status.state
        if state == "CONNECTED":
            return
        time.sleep(0.5)
    server = _server(member.tunnel)
    endpoint = render.server_endpoint(member.tunnel, server)
    raise VpnError(
        f"{member.node.name} could not reach the tunnel server {server.node.name} at "
        f"{endpoint}:{member.tunnel.port}/udp within {timeout:.0f} s (state {state or 'none'}); "
        "check the address, the port and any firewall on the way"
    )


def _up_one(
    member: TunnelMember,
    undo: list[tuple[str, Callable[[], None]]],
    timeout: float,
    say: Callable[[str], None],
) -> None:
    """Install and (re)start one member; registers how to undo it; reports each step."""
    tunnel = member.tunnel.name
    files = _files(member)
    with open_remote(member.node.name, member.effective_control_uri) as remote:
        _check_node_networks(remote, member)
        backup = nodectl.install(remote, files)
        was_running = nodectl.running_pid(remote, tunnel) is not None
        say(f"{member.node.name}: {len(backup.changed)} file(s) changed of {len(files)}")
        for warning in nodectl.buffer_warnings(remote):
            say(f"WARNING: {warning}")

        def rollback() -> None:
            with open_remote(member.node.name, member.effective_control_uri) as again:
                if not was_running or backup.changed:
                    nodectl.stop(again, tunnel)
                nodectl.restore(again, backup)
                if was_running and backup.changed:
                    nodectl.start(again, tunnel)

        undo.append((member.node.name, rollback))
        if was_running and nodectl.paths.conf(tunnel) in backup.changed:
            nodectl.stop(remote, tunnel)
            nodectl.start(remote, tunnel)
            say(f"{member.node.name}: OpenVPN restarted with the new config")
        elif not was_running:
            nodectl.start(remote, tunnel)
            say(f"{member.node.name}: OpenVPN started")
        else:
            say(f"{member.node.name}: OpenVPN already running")
        if not member.is_server:
            say(f"{member.node.name}: waiting up to {timeout:.0f} s for the server to answer")
            _wait_connected(remote, member, timeout)
            say(f"{member.node.name}: connected, tunnel address {member.address}")


def up(
    node: Node | str,
    *,
    timeout: float = CONNECT_TIMEOUT,
    on_line: Callable[[str], None] | None = None,
    checkpoint: Callable[[], None] | None = None,
) -> list[str]:
    """Install the node's config (and its server's) and start OpenVPN; roll back on failure.

    On success the node's tunnel address becomes its migration address. Returns
    what was done, line by line; ``on_line`` also receives each line as it happens
    (a job's log), rollback steps included. ``checkpoint`` runs after each step and
    may raise to stop (a job's abort): what was done is rolled back the same way.
    """
    member = get_member(node)
    members = [member] if member.is_server else [_server(member.tunnel), member]
    undo: list[tuple[str, Callable[[], None]]] = []
    lines: list[str] = []

    def note(line: str) -> None:
        lines.append(line)
        if on_line is not None:
            on_line(line)

    def step_done(line: str) -> None:
        note(line)
        if checkpoint is not None:
            checkpoint()

    try:
        for one in members:
            _up_one(one, undo, timeout, step_done)
    except Exception as exc:
        for name, step in reversed(undo):
            try:
                step()
                note(f"{name}: rolled back (files as they were, daemon as it was)")
            except (VpnError, HypervisorError) as undo_exc:
                note(f"{name}: rollback step failed: {undo_exc}")
                log.warning("rollback step failed: %s", undo_exc)
        if isinstance(exc, (VpnError, HypervisorError, ValidationError)):
            message = exc.message if hasattr(exc, "message") else str(exc)
            _set_state(member, VpnState.ERROR, str(message))
        raise
    now = timezone.now()
    for one in members:
        TunnelMember.objects.filter(pk=one.pk).update(installed_at=now)
        # Peers now reach the node's own sshd at its tunnel address: the peer path.
        Node.objects.filter(pk=one.node_id).update(
            migration_address=one.address, migration_ssh_port=22
        )
        refresh_status(one)
    return lines


def start(node: Node | str) -> str:
    member = get_member(node)
    with open_remote(member.node.name, member.effective_control_uri) as remote:
        if remote.read_file(nodectl.paths.conf(member.tunnel.name)) is None:
            raise VpnError(f"{member.node.name}: no tunnel config installed; run `vpn up` first")
        if nodectl.running_pid(remote, member.tunnel.name) is None:
            nodectl.start(remote, member.tunnel.name)
    _set_state(member, VpnState.CONNECTING, "started")
    return f"{member.node.name}: OpenVPN started"


def stop(node: Node | str) -> str:
    member = get_member(node)
    with open_remote(member.node.name, member.effective_control_uri) as remote:
        was = nodectl.stop(remote, member.tunnel.name)
    _set_state(member, VpnState.DOWN, "stopped by an admin")
    return f"{member.node.name}: OpenVPN {'stopped' if was else 'was not running'}"


def restart(node: Node | str) -> str:
    stop(node)
    return start(node)


# -- status ------------------------------------------------------------------------


def _set_state(member: TunnelMember, state: str, reason: str, **fields: object) -> None:
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
        _set_state(member, VpnState.ERROR, str(message))
    else:
        if status is None:
            _set_state(member, VpnState.DOWN, "OpenVPN is not running", peers=[])
        elif member.is_server:
            peers = [peer.as_json() for peer in status.peers]
            _set_state(
                member,
                VpnState.UP,
                f"{len(peers)} client(s) connected",
                peers=peers,
                bytes_in=status.bytes_in,
                bytes_out=status.bytes_out,
            )
        else:
            server = _server(tunnel)
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
            _set_state(
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
    host = _ip(parse_node_uri(node.uri, resolve=False).host or "")
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
    ip = _ip(address)
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
