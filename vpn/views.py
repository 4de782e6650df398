"""VPN page: tunnels, members with a state badge, peers, and action buttons (POST).

Up, start, stop and restart queue a job and lead to its page; Refresh re-reads
the member's status in a worker. Refusals and conflicts come back as messages.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from jobs.choices import JobStatus
from jobs.errors import JobConflict
from jobs.models import Job
from kvmmgr import audit
from kvmmgr.access import Actor, Permission
from vpn import jobs
from vpn.models import Tunnel, TunnelMember
from vpn.tasks import refresh_member


def tunnel_list(request: HttpRequest) -> HttpResponse:
    tunnels = list(Tunnel.objects.prefetch_related("members__node"))
    active = {
        job.lock_key: job
        for job in Job.objects.filter(
            lock_key__in=[jobs.lock_key(t.name) for t in tunnels], status__in=JobStatus.active()
        ).only("pk", "kind", "status", "target_name", "lock_key")
    }
    for tunnel in tunnels:
        tunnel.active_job = active.get(jobs.lock_key(tunnel.name))  # type: ignore[attr-defined]
    return render(request, "vpn/tunnel_list.html", {"tunnels": tunnels})


@require_POST
def member_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    member = get_object_or_404(TunnelMember.objects.select_related("node"), pk=pk)
    actor = Actor.from_request(request)
    if action == "status":
        with audit.action(actor, Permission.VPN_MANAGE, "vpn.status", target=member.node.name):
            transaction.on_commit(lambda: refresh_member.delay(member.pk))
        messages.info(request, f"VPN status refresh queued for {member.node.name}.")
        return redirect("vpn:tunnel_list")
    try:
        job = jobs.request_action(member.node, action, actor)
    except (JobConflict, ValidationError) as exc:
        text = str(exc) if isinstance(exc, JobConflict) else " ".join(exc.messages)
        messages.error(request, text)
        return redirect("vpn:tunnel_list")
    messages.success(request, f"Job #{job.pk} queued: {job.get_kind_display()} {job.target_name}.")
    return redirect("jobs:job_detail", pk=job.pk)
