"""The VM list (the thesis's ``listvms``), rendered from the database only."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from kvmmgr.access import Actor
from nodes.services import registry
from vms.services.listing import inventory_by_node, inventory_version


def vm_list(request: HttpRequest) -> HttpResponse:
    groups = inventory_by_node()
    context = {"groups": groups, "version": inventory_version(groups)}
    return render(request, "vms/vm_list.html", context)


@require_GET
def vm_list_state(request: HttpRequest) -> JsonResponse:
    """What the VM list polls: a version that changes when anything shown would change."""
    return JsonResponse({"version": inventory_version(inventory_by_node())})


@require_POST
def refresh_all(request: HttpRequest) -> HttpResponse:
    count = registry.request_refresh(actor=Actor.from_request(request))
    messages.info(request, f"Inventory refresh queued for {count} node(s).")
    return redirect("vms:vm_list")
