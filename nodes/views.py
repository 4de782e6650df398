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
from nodes.forms import NodeForm
from nodes.models import Node
from nodes.services import hostkeys, registry


def node_list(request: HttpRequest) -> HttpResponse:
    nodes = Node.objects.annotate(
        vm_count=Count("vms", filter=Q(vms__vanished_at__isnull=True))
    ).order_by("name")
    return render(request, "nodes/node_list.html", {"nodes": nodes})


def _save(request: HttpRequest, form: NodeForm, node: Node | None) -> bool:
    fields = ("name", "uri", "migration_address", "migration_ssh_port", "virt_type", "enabled")
    data = {key: form.cleaned_data[key] for key in fields}
    try:
        if node is None:
            saved = registry.add_node(actor=Actor.from_request(request), **data)
            messages.success(request, f"Node {saved.name} added; its inventory is being read.")
        else:
            saved = registry.update_node(node, Actor.from_request(request), **data)
            messages.success(request, f"Node {saved.name} saved.")
    except ValidationError as exc:
        for field, errors in exc.message_dict.items():
            for error in errors:
                form.add_error(field if field in form.fields else None, error)
        return False
    return True


@require_http_methods(["GET", "POST"])
def node_add(request: HttpRequest) -> HttpResponse:
    # Refuse before the form: a viewer sees a 403, not a form it can never submit.
    require(Actor.from_request(request), Permission.NODE_MANAGE, action="node.add")
    form = NodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid() and _save(request, form, None):
        return redirect("nodes:node_list")
    return render(request, "nodes/node_form.html", {"form": form, "node": None})


@require_http_methods(["GET", "POST"])
def node_edit(request: HttpRequest, pk: int) -> HttpResponse:
    require(Actor.from_request(request), Permission.NODE_MANAGE, action="node.update")
    node = get_object_or_404(Node, pk=pk)
    # Bind to a copy so a failed validation never leaves the instance half-changed.
    form = NodeForm(request.POST or None, instance=Node.objects.get(pk=pk))
    if request.method == "POST" and form.is_valid() and _save(request, form, node):
        return redirect("nodes:node_list")
    context = {
        "form": form,
        "node": node,
        "host_key": hostkeys.pinned_fingerprint(node)
        if node.uri.startswith("qemu+ssh://")
        else None,
        "trust_confirmed": hostkeys.trust_confirmed(node),
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
    on = request.POST.get("state") == "on"
    try:
        registry.set_maintenance(
            node, Actor.from_request(request), on, request.POST.get("reason", "")
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
