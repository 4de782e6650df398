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
from vms.forms.evacuate import EvacuateForm
from vms.services.evacuation import request_evacuation


@require_http_methods(["GET", "POST"])
def node_evacuate(request: HttpRequest, pk: int) -> HttpResponse:
    actor = Actor.from_request(request)
    require(actor, Permission.NODE_MANAGE, action="node.evacuate")
    node = get_object_or_404(Node, pk=pk)
    source = request.POST if request.method == "POST" else request.GET
    form = EvacuateForm(source)
    data = {k: v for k, v in form.data.items() if k in form.fields and k != "dry_run"}
    try:
        plan, job = request_evacuation(node, actor, **data, dry_run=request.method != "POST")
    except (ValidationError, JobConflict) as exc:
        text = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        messages.error(request, text)
        return redirect("nodes:node_edit", pk=node.pk)
    form.is_valid()  # valid: the service took it
    if job is not None:
        return redirect("jobs:job_detail", pk=job.pk)
    values = form.cleaned_data
    others = Node.objects.exclude(pk=node.pk).order_by("name")
    # The page renders the form's own fields, showing what was planned; the start
    # form carries the same values hidden (without ids: they are the plan form's).
    shown = EvacuateForm(initial=values)
    shown.fields["to"].widget.choices = [(other.name, other.name) for other in others]
    context = {
        "node": node,
        "plan": plan,
        "returning": values["returning"],
        "include_stopped": values["include_stopped"],
        "form": shown,
        "carried": EvacuateForm(initial=values, auto_id=False),
    }
    return render(request, "nodes/node_evacuate.html", context)
