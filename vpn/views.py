"""VPN page: tunnels, members with a state badge, peers, and start/stop buttons (POST)."""

from __future__ import annotations

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from kvmmgr import audit
from kvmmgr.access import Actor, Permission
from vpn.models import Tunnel, TunnelMember
from vpn.tasks import ACTIONS, control_member


def tunnel_list(request: HttpRequest) -> HttpResponse:
    tunnels = Tunnel.objects.prefetch_related("members__node")
    return render(request, "vpn/tunnel_list.html", {"tunnels": tunnels})


@require_POST
def member_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    member = get_object_or_404(TunnelMember.objects.select_related("node"), pk=pk)
    if action not in ACTIONS:
        messages.error(request, f"Unknown action {action!r}.")
        return redirect("vpn:tunnel_list")
    with audit.action(
        Actor.from_request(request),
        Permission.VPN_MANAGE,
        f"vpn.{action}",
        target=member.node.name,
    ):
        transaction.on_commit(lambda: control_member.delay(member.pk, action))
    messages.info(request, f"VPN {action} queued for {member.node.name}.")
    return redirect("vpn:tunnel_list")
