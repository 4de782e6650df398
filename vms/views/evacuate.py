"""The node's evacuation page: the plan first (which VM where, and why; what stays and
why), then the evacuation job. Planning reads the database only."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from jobs.errors import JobConflict
from kvmmgr.access import Actor, Permission, require
from nodes.models import Node
from vms.services.evacuation import request_evacuation


@require_http_methods(["GET", "POST"])
def node_evacuate(request: HttpRequest, pk: int) -> HttpResponse:
    actor = Actor.from_request(request)
    require(actor, Permission.NODE_MANAGE, action="node.evacuate")
    node = get_object_or_404(Node, pk=pk)
    returning = (request.POST.get("returning") or request.GET.get("returning")) == "1"
    source = request.POST if request.method == "POST" else request.GET
    include_stopped = source.get("include_stopped") == "on"
    try:
        parallel = int(source.get("parallel") or 1)
    except ValueError:
        parallel = 0  # refused with the service's message
    to = [name for name in source.getlist("to") if name]
    try:
        plan, job = request_evacuation(
            node, actor, to=to, parallel=parallel, include_stopped=include_stopped,
            returning=returning, dry_run=request.method != "POST",
        )  # fmt: skip
    except (ValidationError, JobConflict) as exc:
        text = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        messages.error(request, text)
        return redirect("nodes:node_edit", pk=node.pk)
    if job is not None:
        return redirect("jobs:job_detail", pk=job.pk)
    context = {
        "node": node,
        "plan": plan,
        "returning": returning,
        "include_stopped": include_stopped,
        "parallel": parallel,
        "to": to,
        "others": Node.objects.exclude(pk=node.pk).order_by("name"),
    }
    return render(request, "nodes/node_evacuate.html", context)
