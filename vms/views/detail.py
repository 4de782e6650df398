"""The VM detail page: rendered from the stored inventory and job rows, never from libvirt."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from jobs.choices import JobStatus
from vms.choices import JobKind
from vms.models import VirtualMachine
from vms.services import lifecycle

HISTORY_LENGTH = 25


@require_GET
def vm_detail(request: HttpRequest, uuid: object) -> HttpResponse:
    vm = get_object_or_404(VirtualMachine.objects.select_related("node"), uuid=uuid)
    jobs = list(vm.jobs.order_by("-created_at", "-pk")[:HISTORY_LENGTH])
    active_job = next((job for job in jobs if job.is_active), None)
    last = jobs[0] if jobs else None
    # A shutdown the guest ignored: offer to force off (while the VM still runs).
    offer_force_off = bool(
        last is not None
        and last.kind == JobKind.SHUTDOWN
        and last.status == JobStatus.FAILED
        and last.progress_detail.get("timed_out")
        and vm.is_active
        and vm.vanished_at is None
    )
    context = {
        "vm": vm,
        "summary": vm.xml_summary,
        "jobs": jobs,
        "active_job": active_job,
        "offer_force_off": offer_force_off,
        "actions": lifecycle.allowed_actions(vm),
        "default_timeout": lifecycle.DEFAULT_SHUTDOWN_TIMEOUT,
    }
    return render(request, "vms/vm_detail.html", context)
