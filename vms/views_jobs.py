"""Job pages: the list, one job (refreshing itself while it runs), its JSON, abort."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from kvmmgr.access import Actor, Permission
from vms.choices import JobStatus
from vms.models import Job
from vms.services.jobs import abort_permission, request_abort
from vms.services.migration.request import request_postcopy

PAGE_SIZE = 50


def job_list(request: HttpRequest) -> HttpResponse:
    jobs = Job.objects.select_related("node").defer("log", "progress_detail")
    status = request.GET.get("status", "")
    if status in JobStatus.values:
        jobs = jobs.filter(status=status)
    page = Paginator(jobs, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "vms/job_list.html",
        {"page": page, "status": status, "statuses": JobStatus.choices},
    )


def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.select_related("node", "vm"), pk=pk)
    # The buttons show only for roles the services would let through (they check again).
    actor = Actor.from_request(request)
    context = {
        "job": job,
        "may_abort": actor.can(abort_permission(job)),
        "may_postcopy": actor.can(Permission.VM_MIGRATE),
    }
    return render(request, "vms/job_detail.html", context)


@require_GET
def job_status(request: HttpRequest, pk: int) -> JsonResponse:
    """What the job page polls: status, progress and the log from an offset."""
    job = get_object_or_404(Job, pk=pk)
    try:
        offset = max(0, int(request.GET.get("log_offset", "0")))
    except ValueError:
        offset = 0
    return JsonResponse(
        {
            "id": job.pk,
            "status": job.status,
            "status_label": job.get_status_display(),
            "active": job.is_active,
            "progress": job.progress,
            "detail": job.progress_detail,
            "error": job.error,
            "command": job.command,
            "duration": job.duration_seconds,
            "log": job.log[offset:],
            "log_offset": len(job.log),
        }
    )


@require_POST
def job_abort(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=pk)
    if request_abort(job, Actor.from_request(request)):
        messages.info(request, f"Abort of job {job.pk} requested.")
    else:
        messages.error(request, f"Job {job.pk} is {job.status}: nothing to abort.")
    return redirect("vms:job_detail", pk=job.pk)


@require_POST
def job_postcopy(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=pk)
    try:
        request_postcopy(job, Actor.from_request(request))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.info(request, f"Switch to post-copy requested for job {job.pk}.")
    return redirect("vms:job_detail", pk=job.pk)
