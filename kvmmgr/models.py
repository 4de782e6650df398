"""Who may do what (a role per user) and what was done (the append-only audit log)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class Role(models.TextChoices):
    """What a user may do; each role includes everything of the ones before it."""

    VIEWER = "viewer", "viewer"
    OPERATOR = "operator", "operator"
    ADMIN = "admin", "admin"


class UserRole(models.Model):
    """The role of one login. A user without a row is a viewer (least privilege)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="kvmmgr_role"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)

    def __str__(self) -> str:
        return f"{self.user} ({self.role})"


class AuditResult(models.TextChoices):
    OK = "ok", "ok"
    DENIED = "denied", "denied (role)"
    REFUSED = "refused", "refused (invalid)"
    FAILED = "failed", "failed"


class AuditQuerySet(models.QuerySet["AuditEntry"]):
    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError("the audit log is append-only: entries cannot be changed")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("the audit log is append-only: entries cannot be deleted")


class AppendOnlyError(RuntimeError):
    """Something tried to change or delete an audit entry."""


class AuditEntry(models.Model):
    """One action someone asked for: who, what, on what, with which parameters, the result.

    Append-only: the model and its queryset refuse updates and deletes, and a
    database trigger (migration 0002) refuses UPDATE statements from anything else.
    """

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=150, db_index=True)
    role = models.CharField(max_length=16, blank=True)
    source = models.CharField(max_length=64, blank=True, help_text="client IP, or cli/system")
    action = models.CharField(max_length=64, db_index=True)
    target = models.CharField(max_length=255, blank=True, db_index=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.CharField(max_length=16, choices=AuditResult.choices)
    detail = models.TextField(blank=True)
    # No FK constraint: jobs may go, the record of who asked for them stays.
    job = models.ForeignKey(
        "jobs.Job",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="audit_entries",
    )

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return (
            f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target}: {self.result}"
        )

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("the audit log is append-only: entries cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("the audit log is append-only: entries cannot be deleted")


class ApiToken(models.Model):
    """A REST API token of one user: its role applies. Only a SHA-256 of the key is
    stored; the key itself is shown once, when the token is created."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=64, help_text="what it is for, e.g. ansible")
    prefix = models.CharField(
        max_length=8, help_text="the key's first characters, to tell keys apart"
    )
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["user_id", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "name"],
                condition=models.Q(revoked_at__isnull=True),
                name="one_live_api_token_name_per_user",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
