"""Celery tasks: take a member's primary key, load it, call the service."""

from __future__ import annotations

import logging

from celery import shared_task

from nodes.hypervisor.errors import HypervisorError
from vpn import services
from vpn.models import TunnelMember

log = logging.getLogger(__name__)

ACTIONS = ("up", "start", "stop", "restart", "status")


@shared_task(name="vpn.tasks.control_member", ignore_result=True)
def control_member(member_id: int, action: str) -> None:
    member = TunnelMember.objects.select_related("tunnel", "node").filter(pk=member_id).first()
    if member is None or action not in ACTIONS:
        return
    try:
        if action == "status":
            services.refresh_status(member)
            return
        getattr(services, action)(member.node)
    except (services.VpnError, HypervisorError) as exc:
        log.warning("vpn %s on %s failed: %s", action, member.node.name, exc.message)
    services.refresh_status(member)
