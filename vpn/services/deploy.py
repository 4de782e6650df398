"""Bringing members up and down on their nodes: render, install, start, wait, roll back.

Failures on a node raise :class:`~vpn.nodectl.VpnError` after every file that
``up`` wrote has been put back.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable

from django.core.exceptions import ValidationError
from django.utils import timezone

from nodes.hypervisor.errors import HypervisorError
from nodes.models import Node
from nodes.remote import RemoteNode, open_remote
from vpn import nodectl, pki, render
from vpn.choices import MemberRole, VpnState
from vpn.models import TunnelMember
from vpn.nodectl import VpnError
from vpn.services.lookup import CONNECT_TIMEOUT, get_member, server_of
from vpn.services.status import refresh_status, set_state
from vpn.validators import (
    parse_cidr,
)

log = logging.getLogger(__name__)


def node_files(member: TunnelMember) -> list[render.NodeFile]:
    tunnel = member.tunnel
    creds = pki.credentials(tunnel.name, member.node.name)
    if member.is_server:
        clients = list(tunnel.members.filter(role=MemberRole.CLIENT).select_related("node"))
        return render.server_files(tunnel, member, creds, clients)
    return render.client_files(tunnel, member, creds, server_of(tunnel))


def install_server(remote: RemoteNode, server: TunnelMember) -> nodectl.Backup:
    return nodectl.install(remote, node_files(server))


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
    server = server_of(member.tunnel)
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
    files = node_files(member)
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
    members = [member] if member.is_server else [server_of(member.tunnel), member]
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
            set_state(member, VpnState.ERROR, str(message))
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
    set_state(member, VpnState.CONNECTING, "started")
    return f"{member.node.name}: OpenVPN started"


def stop(node: Node | str) -> str:
    member = get_member(node)
    with open_remote(member.node.name, member.effective_control_uri) as remote:
        was = nodectl.stop(remote, member.tunnel.name)
    set_state(member, VpnState.DOWN, "stopped by an admin")
    return f"{member.node.name}: OpenVPN {'stopped' if was else 'was not running'}"


def restart(node: Node | str) -> str:
    stop(node)
    return start(node)
