"""Celery tasks: take a member's primary key, load it, call the service.

Changes (up, start, stop, restart) are jobs (``vpn.jobs``); reading a member's
status only updates its row, like a node's inventory refresh.
"""

from __future__ import annotations

from celery import shared_task

from vpn import services
from vpn.models import TunnelMember


@shared_task(name="vpn.tasks.refresh_member", ignore_result=True)
def refresh_member(member_id: int) -> None:
    member = TunnelMember.objects.select_related("tunnel", "node").filter(pk=member_id).first()
    if member is not None:
        services.refresh_status(member)
