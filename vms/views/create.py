"""The create-VM page: choose a node, then fill a form built from that node's facts.

The view validates against the database and queues a job; the work runs in a
Celery worker, never in the request.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from kvmmgr.access import Actor, Permission, require
from nodes.models import Node
from vms.forms.create import CreateVMForm
from vms.services.create import submit_create


def _chosen_node(request: HttpRequest) -> Node | None:
    value = request.GET.get("node", "")
    return Node.objects.filter(pk=int(value)).first() if value.isdigit() else None


@require_http_methods(["GET", "POST"])
def vm_create(request: HttpRequest) -> HttpResponse:
    # Refuse before the form: a viewer sees a 403, not a form it can never submit.
    require(Actor.from_request(request), Permission.VM_CREATE, action="vm.create")
    node = _chosen_node(request)
    nodes = Node.objects.order_by("name")
    if node is None:
        return render(request, "vms/vm_create.html", {"nodes": nodes, "node": None})
    form = CreateVMForm(node, request.POST or None)
    if request.method == "POST":
        try:
            job = submit_create(form, actor=Actor.from_request(request))
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                if field in form.fields and form.has_error(field):
                    continue  # the form shows it already
                for error in errors:
                    form.add_error(field if field in form.fields else None, error)
        else:
            messages.success(
                request, f"Job #{job.pk} queued: create {job.target_name} on {node.name}."
            )
            return redirect("jobs:job_detail", pk=job.pk)
    return render(request, "vms/vm_create.html", {"nodes": nodes, "node": node, "form": form})
