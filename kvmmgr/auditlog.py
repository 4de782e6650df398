"""Writing one audit row: the bottom of the audit log.

``access.require`` records refusals and ``audit.action`` records outcomes, so the
row writer lives below both (``access`` imports it, ``audit`` imports ``access``):
no import cycle. It knows its callers' objects only by shape, so ``kvmmgr`` never
imports the apps above it (a job is any saved row with a ``pk``).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from kvmmgr.models import AuditEntry, AuditResult


class Who(Protocol):
    """Whoever asked (``access.Actor``): name, role and where from."""

    @property
    def name(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def source(self) -> str: ...


class SavedRow(Protocol):
    """A saved model row an entry points at: the job an action queued."""

    @property
    def pk(self) -> Any: ...


_SECRET_WORDS = ("password", "secret", "token", "key")


def record(
    actor: Who,
    action: str,
    *,
    target: str = "",
    params: dict[str, Any] | None = None,
    result: str = AuditResult.OK,
    detail: str = "",
    job: SavedRow | None = None,
) -> AuditEntry:
    return AuditEntry.objects.create(
        actor=actor.name[:150],
        role=actor.role,
        source=actor.source[:64],
        action=action[:64],
        target=str(target)[:255],
        params=_jsonable(params or {}),
        result=result,
        detail=detail,
        job=job,
    )


def _jsonable(value: dict[str, Any]) -> dict[str, Any]:
    # Parameters come from forms and dataclasses; keep what JSON can hold, the rest as text.
    # Secrets never reach the log, whatever a service passes.
    clean = {
        key: "(hidden)" if any(word in key.lower() for word in _SECRET_WORDS) else item
        for key, item in value.items()
    }
    return json.loads(json.dumps(clean, default=str))
