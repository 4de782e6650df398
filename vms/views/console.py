"""Console pages: the browser console (noVNC through the console proxy) and, for native
VNC clients, the address and password (shown after a POST, never cached)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from kvmmgr.access import Actor, Permission, require
from vms.models import VirtualMachine
from vms.services import console_tickets
from vms.services.console import open_console


def _vm(uuid: str) -> VirtualMachine:
    return get_object_or_404(VirtualMachine.objects.select_related("node"), uuid=uuid)


@require_GET
def vm_console(request: HttpRequest, uuid: str) -> HttpResponse:
    """The browser console page; it asks for a ticket itself, on load and on reconnect."""
    require(Actor.from_request(request), Permission.VM_CONSOLE, action="vm.console")
    vm = _vm(uuid)
    context = {"vm": vm, "console_url": settings.KVMMGR_CONSOLE_URL}
    return render(request, "vms/vm_console.html", context)


@never_cache
@require_POST
def vm_console_ticket(request: HttpRequest, uuid: str) -> JsonResponse:
    """A one-time ticket (and the VNC password) for this VM's console, as JSON."""
    vm = _vm(uuid)
    try:
        ticket = console_tickets.issue(
            vm, Actor.from_request(request), request.user, request.session.session_key or ""
        )
    except ValidationError as exc:
        return JsonResponse({"error": " ".join(exc.messages)}, status=409)
    return JsonResponse(
        {
            "token": ticket.token,
            "password": ticket.password,
            "expires_at": ticket.expires_at.isoformat(),
            "vm": vm.name,
            "node": vm.node.name,
        }
    )


@never_cache
@require_POST
def vm_console_native(request: HttpRequest, uuid: str) -> HttpResponse:
    """Address, ssh tunnel and password for a native VNC client."""
    vm = _vm(uuid)
    try:
        console = open_console(vm, Actor.from_request(request))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("vms:vm_detail", uuid=vm.uuid)
    return render(request, "vms/vm_console_native.html", {"vm": vm, "console": console})
