"""Node pages: thin views over nodes.services.registry. No libvirt here."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from kvmmgr.access import Actor, Permission, require
from kvmmgr.redirects import back_to
from nodes.forms import MaintenanceForm, NodeForm
from nodes.models import Node
from nodes.services import hostkeys, registry


def node_list(request: HttpRequest) -> HttpResponse:
    nodes = Node.objects.annotate(
        vm_count=Count("vms", filter=Q(vms__vanished_at__isnull=True))
    ).order_by("name")
    return render(request, "nodes/node_list.html", {"nodes": nodes})


def _save(request: HttpRequest, form: NodeForm) -> bool:
    """Add or change the node through its form; a refusal leaves its errors on the form."""
    adding = form.instance.pk is None
    try:
        saved = registry.save_node(form, Actor.from_request(request))
    except ValidationError as exc:
        if not form.errors:  # refused by the service, not by the form
            for field, errors in exc.message_dict.items():
                for error in errors:
                    form.add_error(field if field in form.fields else None, error)
        return False
    if adding:
        messages.success(request, f"Node {saved.name} added; its inventory is being read.")
    else:
        messages.success(request, f"Node {saved.name} saved.")
    return True


@require_http_methods(["GET", "POST"])
def node_add(request: HttpRequest) -> HttpResponse:
    # Refuse before the form: a viewer sees a 403, not a form it can never submit.
    require(Actor.from_request(request), Permission.NODE_MANAGE, action="node.add")
    form = NodeForm.from_page(request.POST) if request.method == "POST" else NodeForm()
    if request.method == "POST" and _save(request, form):
        return redirect("nodes:node_list")
    return render(request, "nodes/node_form.html", {"form": form, "node": None})


@require_http_methods(["GET", "POST"])
def node_edit(request: HttpRequest, pk: int) -> HttpResponse:
    require(Actor.from_request(request), Permission.NODE_MANAGE, action="node.update")
    node = get_object_or_404(Node, pk=pk)
    # Bound to a copy so a failed validation never leaves the instance half-changed.
    if request.method == "POST":
        form = NodeForm.from_page(request.POST, node)
    else:
        form = NodeForm(instance=Node.objects.get(pk=pk))
    if request.method == "POST" and _save(request, form):
        return redirect("nodes:node_list")
    context = {
        "form": form,
        "node": node,
        "host_key": hostkeys.pinned_fingerprint(node)
        if node.uri.startswith("qemu+ssh://")
        else None,
        "trust_confirmed": hostkeys.trust_confirmed(node),
        "maintenance_form": MaintenanceForm(),
    }
    return render(request, "nodes/node_form.html", context)


@require_POST
def node_trust(request: HttpRequest, pk: int) -> HttpResponse:
    """Confirm (or withdraw) the node's pinned host key: the gate for migration trust."""
    node = get_object_or_404(Node, pk=pk)
    actor = Actor.from_request(request)
    try:
        if request.POST.get("revoke"):
            registry.revoke_trust(node, actor)
            messages.success(
                request, f"Trust in {node.name} withdrawn; its key is being removed from its peers."
            )
        else:
            registry.confirm_trust(node, actor, request.POST.get("fingerprint", ""))
            messages.success(request, f"{node.name}'s host key {node.trusted_host_key} confirmed.")
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
    return redirect("nodes:node_edit", pk=node.pk)


@require_POST
def node_maintenance(request: HttpRequest, pk: int) -> HttpResponse:
    node = get_object_or_404(Node, pk=pk)
    # MaintenanceForm's "on" is the page's button: ``state`` on or off.
    on = request.POST.get("state") == "on"
    try:
        registry.set_maintenance(
            node, Actor.from_request(request), on=on, reason=request.POST.get("reason", "")
        )
        messages.success(request, f"{node.name} is {'in' if on else 'out of'} maintenance.")
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
    return redirect("nodes:node_edit", pk=node.pk)


@require_http_methods(["GET", "POST"])
def node_delete(request: HttpRequest, pk: int) -> HttpResponse:
    require(Actor.from_request(request), Permission.NODE_MANAGE, action="node.remove")
    node = get_object_or_404(Node, pk=pk)
    if request.method == "POST":
        name = node.name
        removed = registry.remove_node(node, Actor.from_request(request))
        messages.success(
            request,
            f"Node {name} removed with {removed} inventory rows; nothing on the host changed.",
        )
        return redirect("nodes:node_list")
    vm_count = node.vms.filter(vanished_at__isnull=True).count()
    return render(request, "nodes/node_confirm_delete.html", {"node": node, "vm_count": vm_count})


@require_POST
def node_refresh(request: HttpRequest, pk: int) -> HttpResponse:
    node = get_object_or_404(Node, pk=pk)
    registry.request_refresh([node], actor=Actor.from_request(request))
    messages.info(request, f"Refresh of {node.name} queued.")
    return back_to(request, reverse("vms:vm_list"))
