"""OpenVPN actions on a tunnel member (up, start, stop, restart) as jobs.

``request_action`` checks the role, audits, and submits a job (no node is
contacted: views and commands call it); ``run_action`` is the handler a worker
runs through ``jobs.runner``. One active VPN job per tunnel (lock
``vpn:<tunnel>``): ``up`` of a client rewrites the server's files too, so two
members of one tunnel are never changed at once.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError

from jobs.context import JobContext
from jobs.errors import JobConflict, JobFailed
from jobs.models import Job
from jobs.runner import submit
from kvmmgr import audit
from kvmmgr.access import Actor, Permission
from nodes.models import Node
from vpn import services
from vpn.choices import VpnJobKind
from vpn.models import TunnelMember
from vpn.nodectl import VpnError

#: Action name (as in ``manage.py vpn ACTION NODE``) → job kind.
KINDS: dict[str, str] = {
    "up": VpnJobKind.VPN_UP,
    "start": VpnJobKind.VPN_START,
    "stop": VpnJobKind.VPN_STOP,
    "restart": VpnJobKind.VPN_RESTART,
}
ACTIONS = tuple(KINDS)
_VERBS = {"up": "install the config and start", "start": "start", "stop": "stop"}
_ACTION_OF_KIND = {kind: action for action, kind in KINDS.items()}


def lock_key(tunnel_name: str) -> str:
    return f"vpn:{tunnel_name}"


def target_name(member: TunnelMember) -> str:
    return f"tunnel {member.tunnel.name} on {member.node.name}"


def request_action(node: Node | str, action: str, actor: Actor) -> Job:
    """Queue ``action`` on the node's tunnel member; returns the job.

    Raises ``ValidationError`` for an unknown action, node or non-member and
    ``JobConflict`` when the tunnel already has an active job (nothing queued).
    """
    name = node.name if isinstance(node, Node) else str(node)
    with audit.action(actor, Permission.VPN_MANAGE, f"vpn.{action}", target=name) as done:
        if action not in KINDS:
            raise ValidationError(
                f"Unknown VPN action {action!r}: one of {', '.join(ACTIONS)}.",
                code="unknown_action",
            )
        member = services.get_member(node)
        done.params["tunnel"] = member.tunnel.name
        try:
            done.job = submit(
                KINDS[action],
                node=member.node,
                target_name=target_name(member),
                requested_by=actor.name,
                params={"action": action, "node": member.node.name},
                lock_key=lock_key(member.tunnel.name),
            )
        except JobConflict as exc:
            active = exc.active
            detail = (
                f"job #{active.pk} ({active.get_kind_display()} {active.target_name}, "
                f"{active.status})"
                if active
                else "a job"
            )
            raise JobConflict(
                f"Tunnel {member.tunnel.name} already has an active job: {detail}. "
                "Wait for it to finish or abort it.",
                active,
            ) from exc
        return done.job


def run_action(ctx: JobContext) -> None:
    """Job handler: run the VPN service, log its lines, then re-read the member's status."""
    action = _ACTION_OF_KIND[ctx.job.kind]
    node_name = ctx.params["node"]
    ctx.set_command(["manage.py", "vpn", action, node_name])
    ctx.check_abort()
    member = services.get_member(node_name)
    what = member.node.name
    server = member.tunnel.server
    if action == "up" and not member.is_server and server is not None:
        what = f"{server.node.name} (its server), then {member.node.name}"
    ctx.progress(5, phase=f"{action}: {what}")
    ctx.log(f"{_VERBS.get(action, action)} OpenVPN of tunnel {member.tunnel.name} on {what}")
    try:
        if action == "up":
            # Each step reaches the job's log as it happens (rollback included); an
            # abort between steps rolls back what was done, as a failure does.
            services.up(member.node, on_line=ctx.log, checkpoint=ctx.check_abort)
        else:
            # start, stop, restart: the service of that name returns one line.
            ctx.log(getattr(services, action)(member.node))
    except VpnError as exc:
        raise JobFailed(exc.message) from exc
    finally:
        # As the page shows it: the member's state as its node reports it now.
        ctx.progress(90, phase="reading status")
        fresh = services.refresh_status(member)
        ctx.log(f"{fresh.node.name}: VPN {fresh.state} ({fresh.state_reason})")
