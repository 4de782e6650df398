"""The VM list (the thesis's ``listvms``), rendered from the database only."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from nodes.services import registry
from vms.services.listing import inventory_by_node


def vm_list(request: HttpRequest) -> HttpResponse:
    return render(request, "vms/vm_list.html", {"groups": inventory_by_node()})


@require_POST
def refresh_all(request: HttpRequest) -> HttpResponse:
    count = registry.request_refresh()
    messages.info(request, f"Inventory refresh queued for {count} node(s).")
    return redirect("vms:vm_list")
