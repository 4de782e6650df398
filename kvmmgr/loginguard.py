"""Failed logins: recorded in the audit log, and an address that fails too often waits.

Both ways in are covered: the login form (``KVMMGR_AUTH=django``) records each
failure here and refuses to check passwords from an address over the limit, and
nginx's basic auth (production) writes each refused ``user:password`` to a log
that :mod:`kvmmgr.authlog` imports into the same audit action. nginx also
rate-limits every address (``limit_req``), which is what slows a basic-auth
brute force down; the audit log is where admins see it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from kvmmgr.models import AuditEntry, AuditResult

FAILED_LOGIN = "auth.failed"


def record_failure(
    username: str, source: str, how: str, *, params: dict[str, str] | None = None
) -> AuditEntry:
    """One refused login attempt: who it claimed to be, from where, through what."""
    return AuditEntry.objects.create(
        actor=(username or "(no user name)")[:150],
        role="",
        source=source[:64],
        action=FAILED_LOGIN,
        target=how[:255],
        result=AuditResult.DENIED,
        params=params or {},
        detail=f"login refused ({how}): unknown user or wrong password",
    )


def lockout_seconds(source: str, *, now: datetime | None = None) -> int:
    """How long ``source`` must wait before its next password is checked (0: not locked).

    Locked once it has ``KVMMGR_LOGIN_MAX_FAILURES`` failures within
    ``KVMMGR_LOGIN_LOCKOUT_SECONDS``; the lock ends that long after the oldest of them.
    """
    limit = settings.KVMMGR_LOGIN_MAX_FAILURES
    window = timedelta(seconds=settings.KVMMGR_LOGIN_LOCKOUT_SECONDS)
    now = now or timezone.now()
    recent = list(
        AuditEntry.objects.filter(action=FAILED_LOGIN, source=source[:64], at__gte=now - window)
        .order_by("-at")
        .values_list("at", flat=True)[:limit]
    )
    if len(recent) < limit:
        return 0
    return max(1, int((recent[-1] + window - now).total_seconds() + 0.999))
