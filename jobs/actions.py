"""What people may do to a job: abort it, or an extra action its kind declares."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.utils import timezone

from jobs import registry
from jobs.choices import JobStatus
from jobs.models import Job
from jobs.registry import JobAction
from kvmmgr import audit
from kvmmgr.access import Actor, Permission, require


def abort_permission(job: Job) -> Permission:
    """The permission its kind names (e.g. VPN work needs the role that may start it);
    a kind no app registers needs the plain right to abort jobs."""
    job_type = registry.find(job.kind)
    return job_type.abort_permission if job_type else Permission.JOB_ABORT


def request_abort(job: Job, actor: Actor) -> bool:
    """Ask a job to stop; a queued job is aborted at once. Returns whether anything changed."""
    with audit.action(
        actor, abort_permission(job), "job.abort", target=f"job #{job.pk} {job.target_name}"
    ) as done:
        done.job = job
        now = timezone.now()
        if Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
            status=JobStatus.ABORTED, finished_at=now, error="aborted before it started"
        ):
            done.detail = "aborted before it started"
            return True
        changed = bool(
            Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(abort_requested=True)
        )
        done.detail = "abort requested" if changed else f"nothing to abort ({job.status})"
        return changed


def offered_actions(job: Job, actor: Actor) -> list[JobAction]:
    """The extra actions to show for ``job`` to ``actor`` now (the services check again)."""
    job_type = registry.find(job.kind)
    if job_type is None:
        return []
    return [a for a in job_type.actions if actor.can(a.permission) and a.available(job)]


def perform(job: Job, name: str, actor: Actor) -> JobAction:
    """Run the extra action ``name`` on ``job``; ``ValidationError`` when its kind has none.

    A role that may not do that action anywhere is refused first (``AccessDenied``), as
    the action's own service would refuse it.
    """
    job_type = registry.find(job.kind)
    found = job_type.action(name) if job_type else None
    if found is None:
        elsewhere = registry.action_named(name)
        if elsewhere is not None:
            require(actor, elsewhere.permission, action=f"job.{name}", target=f"job #{job.pk}")
        raise ValidationError(f"Job {job.pk} ({job.get_kind_display()}) has no {name} action.")
    found.perform(job, actor)
    return found
