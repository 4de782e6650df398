"""Job pages: the list, one job (refreshing itself while it runs), its JSON, abort,
and the extra actions a kind declares in the registry."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from jobs import actions, children
from jobs.choices import JobStatus
from jobs.models import Job
from kvmmgr.access import Actor

PAGE_SIZE = 50


def job_list(request: HttpRequest) -> HttpResponse:
    jobs = Job.objects.select_related("node").defer("log", "progress_detail")
    status = request.GET.get("status", "")
    if status in JobStatus.values:
        jobs = jobs.filter(status=status)
    page = Paginator(jobs, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "jobs/job_list.html",
        {"page": page, "status": status, "statuses": JobStatus.choices},
    )


def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.select_related("node", "vm"), pk=pk)
    # The buttons show only for roles the services would let through (they check again).
    actor = Actor.from_request(request)
    context = {
        "job": job,
        "job_type": job.job_type,
        "may_abort": actor.can(actions.abort_permission(job)),
        "actions": actions.offered_actions(job, actor) if job.is_active else [],
        "children": list(children.children(job).defer("log", "progress_detail")),
    }
    return render(request, "jobs/job_detail.html", context)


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
    if actions.request_abort(job, Actor.from_request(request)):
        messages.info(request, f"Abort of job {job.pk} requested.")
    else:
        messages.error(request, f"Job {job.pk} is {job.status}: nothing to abort.")
    return redirect("jobs:job_detail", pk=job.pk)


@require_POST
def job_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """An extra action of the job's kind (e.g. a migration's switch to post-copy)."""
    job = get_object_or_404(Job, pk=pk)
    job_type = job.job_type
    if job_type is None or job_type.action(action) is None:
        raise Http404(f"job {job.pk} has no action {action}")
    try:
        done = actions.perform(job, action, Actor.from_request(request))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.info(request, f"{done.done} for job {job.pk}.")
    return redirect("jobs:job_detail", pk=job.pk)
