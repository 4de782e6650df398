"""The Job row: one long operation, its progress, log and outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models
from django.utils import timezone

from jobs import registry
from jobs.choices import JobStatus

if TYPE_CHECKING:
    from jobs.registry import JobType


class Job(models.Model):
    """One long operation (create, start, stop, delete, migrate…), run by a Celery worker.

    The row is the source of truth for the UI and the CLI: status, progress, log
    and error are written by the runner as the work goes. ``lock_key`` names what
    the job works on (``vm:<uuid>``, or ``vmname:<name>`` before a VM exists); a
    partial unique index allows one active job per key, so two clicks or two
    admins can never start two operations on one VM.

    ``kind`` has no choices: the apps register their kinds in ``jobs.registry``.
    The table keeps the name it had when the model lived in ``vms``.
    """

    kind = models.CharField(max_length=32)
    status = models.CharField(
        max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    vm = models.ForeignKey(
        "vms.VirtualMachine",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
    )
    node = models.ForeignKey(
        "nodes.Node", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    target_name = models.CharField(max_length=255, help_text="VM name, kept after the VM is gone")
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="children",
        help_text="the job that started this one (an evacuation's migrations)",
    )
    lock_key = models.CharField(max_length=300)
    params = models.JSONField(default=dict, blank=True)
    progress = models.PositiveSmallIntegerField(default=0)
    progress_detail = models.JSONField(default=dict, blank=True)
    log = models.TextField(blank=True)
    command = models.TextField(blank=True, help_text="equivalent command an admin could run")
    error = models.TextField(blank=True)
    requested_by = models.CharField(max_length=150, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    abort_requested = models.BooleanField(default=False)
    # An admin asked a running migration to switch to post-copy now.
    postcopy_requested = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "vms_job"
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["lock_key"],
                condition=models.Q(status__in=["queued", "running"]),
                name="one_active_job_per_target",
            ),
            models.CheckConstraint(
                condition=models.Q(progress__lte=100), name="job_progress_at_most_100"
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.pk} {self.kind} {self.target_name} ({self.status})"

    def get_kind_display(self) -> str:
        """The registered label of this job's kind (the raw kind if none is registered)."""
        return registry.label(self.kind)

    @property
    def job_type(self) -> JobType | None:
        """What the registry says about this kind; None for a kind no app registers."""
        return registry.find(self.kind)

    @property
    def is_active(self) -> bool:
        return self.status in JobStatus.active()

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()
