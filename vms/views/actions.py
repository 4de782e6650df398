"""VM action endpoints: POST only, CSRF on; each validates and queues a job, nothing more.

Force off and delete have a confirmation page (GET, changes nothing) that posts
to the action URL. Refusals and job conflicts come back as messages.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from jobs.errors import JobConflict
from jobs.models import Job
from kvmmgr.access import Actor, Permission, require
from kvmmgr.redirects import safe_next
from vms.models import VirtualMachine
from vms.services import lifecycle


def _vm(uuid: object) -> VirtualMachine:
    return get_object_or_404(VirtualMachine.objects.select_related("node"), uuid=uuid)


def _back(request: HttpRequest, vm: VirtualMachine) -> str:
    """Where to go after an action: a safe local ``next``, else the VM's page."""
    return safe_next(request, reverse("vms:vm_detail", args=[vm.uuid]))


def _queue(
    request: HttpRequest,
    vm: VirtualMachine,
    submit: Callable[[], Job],
    *,
    on_refusal: str | None = None,
) -> HttpResponse:
    try:
        job = submit()
    except JobConflict as exc:
        messages.error(request, str(exc))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        if on_refusal:
            return redirect(on_refusal)
    else:
        messages.success(request, f"Job #{job.pk} queued: {job.get_kind_display()} {vm.name}.")
    return redirect(_back(request, vm))


def _user(request: HttpRequest) -> Actor:
    return Actor.from_request(request)


@require_POST
def vm_start(request: HttpRequest, uuid: object) -> HttpResponse:
    vm = _vm(uuid)
    return _queue(request, vm, lambda: lifecycle.request_start(vm, _user(request)))


@require_POST
def vm_shutdown(request: HttpRequest, uuid: object) -> HttpResponse:
    vm = _vm(uuid)
    timeout = request.POST.get("timeout") or lifecycle.DEFAULT_SHUTDOWN_TIMEOUT
    return _queue(
        request, vm, lambda: lifecycle.request_shutdown(vm, _user(request), timeout=timeout)
    )


@require_POST
def vm_reboot(request: HttpRequest, uuid: object) -> HttpResponse:
    vm = _vm(uuid)
    return _queue(request, vm, lambda: lifecycle.request_reboot(vm, _user(request)))


@require_GET
def vm_force_off_confirm(request: HttpRequest, uuid: object) -> HttpResponse:
    vm = _vm(uuid)
    require(_user(request), Permission.VM_POWER, action="vm.force_off", target=vm.name)
    return render(request, "vms/vm_confirm_force_off.html", {"vm": vm})


@require_POST
def vm_force_off(request: HttpRequest, uuid: object) -> HttpResponse:
    vm = _vm(uuid)
    return _queue(request, vm, lambda: lifecycle.request_force_off(vm, _user(request)))


@require_GET
def vm_delete_confirm(request: HttpRequest, uuid: object) -> HttpResponse:
    vm = _vm(uuid)
    require(_user(request), Permission.VM_DELETE, action="vm.delete", target=vm.name)
    context = {"vm": vm, "disks": lifecycle.deletable_disks(vm)}
    return render(request, "vms/vm_confirm_delete.html", context)


@require_POST
def vm_delete(request: HttpRequest, uuid: object) -> HttpResponse:
    vm = _vm(uuid)
    disks = request.POST.getlist("disk")
    force_off = request.POST.get("force_off") == "on"
    return _queue(
        request,
        vm,
        lambda: lifecycle.request_delete(vm, _user(request), disks=disks, force_off=force_off),
        on_refusal=reverse("vms:vm_delete_confirm", args=[vm.uuid]),
    )
