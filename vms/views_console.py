"""The console page: shown after a POST, never cached, so a password is not left behind."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from kvmmgr.access import Actor
from vms.models import VirtualMachine
from vms.services.console import open_console


@never_cache
@require_POST
def vm_console(request: HttpRequest, uuid: str) -> HttpResponse:
    vm = get_object_or_404(VirtualMachine.objects.select_related("node"), uuid=uuid)
    try:
        console = open_console(vm, Actor.from_request(request))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("vms:vm_detail", uuid=vm.uuid)
    return render(request, "vms/vm_console.html", {"vm": vm, "console": console})
