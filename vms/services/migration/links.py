"""Naming the broken link when a migration fails: the peer path, or the tunnel under it."""

from __future__ import annotations

import logging

from jobs.context import JobContext
from nodes.hypervisor import HypervisorError
from nodes.models import Node
from nodes.services import links, trust
from vms.services.migration.options import MIGRATION_PORT

log = logging.getLogger(__name__)

_LINK_LOSS = (
    "socket is closed",
    "connection reset",
    "broken pipe",
    "unreachable",
    "timed out",
    "no route",
    "keepalive",
)


def recheck_peer_path(ctx: JobContext, source: Node, dest: Node, exc: HypervisorError) -> None:
    """After a failure with the peer check skipped: run it now, to name what broke."""
    ctx.log("the peer path was not re-checked before this migration; checking it now")
    try:
        found = trust.preflight(source, dest, MIGRATION_PORT)
    except HypervisorError as probe_exc:
        ctx.log(f"could not check the peer path: {probe_exc.message}")
        return
    if found.ok:
        return
    problem = tunnel_down_reason(source, dest)
    message = trust.peer_path_failure(source, dest, found.error)
    raise HypervisorError(
        f"{problem + '. ' if problem else ''}{message}; the VM stays on {source.name}",
        retryable=True,
        uri=exc.uri,
    ) from exc


def tunnel_down_reason(source: Node, dest: Node) -> str:
    """Why the tunnel carrying ``dest``'s peer path is down, or '' (no tunnel, or up)."""
    tunnel = links.overlay_of(dest.effective_migration_address)
    if not tunnel:
        return ""
    try:
        return links.link_problem([source, dest])
    except Exception as probe_exc:  # a diagnosis must never hide the failure itself
        log.warning("could not read the state of tunnel %s: %s", tunnel, probe_exc)
        return ""


def explain_link_loss(exc: HypervisorError, source: Node, dest: Node) -> HypervisorError:
    """Name the tunnel when the destination is reached through one and it is down.

    The tunnel's members are asked afresh (management interface, over their
    control path): a stopped or disconnected tunnel is reported as "VPN down"
    whatever libvirt's own words were. When the tunnel looks up but libvirt
    reported a broken connection, the message still names the tunnel.
    """
    address = dest.effective_migration_address
    tunnel = links.overlay_of(address)
    if not tunnel:
        return exc
    problem = tunnel_down_reason(source, dest)
    if problem:
        return HypervisorError(
            f"{problem}. The migration to {dest.name} at {address} broke ({exc.message}); "
            f"the VM stays on {source.name}.",
            retryable=True,
            uri=exc.uri,
        )
    if not any(marker in exc.message.lower() for marker in _LINK_LOSS):
        return exc
    return HypervisorError(
        f"VPN down or link lost: {dest.name} is reached at {address} through tunnel "
        f"{tunnel}, and the connection broke ({exc.message}). The VM stays on the source.",
        retryable=True,
        uri=exc.uri,
    )
