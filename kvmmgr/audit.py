"""The audit log: every action asked of a service, with who, what, target, parameters, result.

Services wrap their work in ``audit.action(actor, permission, what, target=…)``:
it checks the role (``access.require``), then records the outcome — ``ok`` with
the job it queued, ``refused`` for invalid input, ``failed`` for anything else.
Rows are written by ``kvmmgr.auditlog.record`` (re-exported here as ``audit.record``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from kvmmgr.access import Actor, Permission, require
from kvmmgr.auditlog import SavedRow, record
from kvmmgr.models import AuditEntry, AuditResult

__all__ = ["EXPORT_FIELDS", "FILTERS", "Outcome", "action", "export", "filtered", "record"]

EXPORT_FIELDS = (
    "id",
    "at",
    "actor",
    "role",
    "source",
    "action",
    "target",
    "params",
    "result",
    "detail",
    "job_id",
)


@dataclass
class Outcome:
    """What the wrapped service reports back for the audit row."""

    job: SavedRow | None = None
    detail: str = ""
    target: str = ""
    params: dict[str, Any] = field(default_factory=dict)


@contextmanager
def action(
    actor: Actor,
    permission: Permission | None,
    what: str,
    *,
    target: str = "",
    params: dict[str, Any] | None = None,
) -> Iterator[Outcome]:
    """Check the role, run the body, and record its outcome (re-raising any error).

    ``permission`` None: no role needed (a user's own things, e.g. their API tokens).
    """
    if permission is not None:
        require(actor, permission, action=what, target=target)
    outcome = Outcome(params=dict(params or {}))
    try:
        yield outcome
    except ValidationError as exc:
        record(
            actor,
            what,
            target=outcome.target or target,
            params=outcome.params,
            result=AuditResult.REFUSED,
            detail="; ".join(exc.messages),
        )
        raise
    except Exception as exc:
        record(
            actor,
            what,
            target=outcome.target or target,
            params=outcome.params,
            result=AuditResult.FAILED,
            detail=str(exc) or type(exc).__name__,
        )
        raise
    detail = outcome.detail or (f"job #{outcome.job.pk} queued" if outcome.job else "")
    record(
        actor,
        what,
        target=outcome.target or target,
        params=outcome.params,
        result=AuditResult.OK,
        detail=detail,
        job=outcome.job,
    )


def export(entries: Iterable[AuditEntry], out: IO[str], fmt: str = "csv") -> int:
    """Write entries as CSV or JSON lines; returns how many."""
    count = 0
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(EXPORT_FIELDS)
    for entry in entries:
        row = {
            "id": entry.pk,
            "at": entry.at.isoformat(),
            "actor": entry.actor,
            "role": entry.role,
            "source": entry.source,
            "action": entry.action,
            "target": entry.target,
            "params": entry.params,
            "result": entry.result,
            "detail": entry.detail,
            "job_id": entry.job_id,
        }
        if writer is not None:
            row["params"] = json.dumps(entry.params, sort_keys=True)
            writer.writerow([row[key] for key in EXPORT_FIELDS])
        else:
            out.write(json.dumps(row, sort_keys=True) + "\n")
        count += 1
    return count


FILTERS = ("actor", "action", "target", "result", "job", "since", "until")


def filtered(filters: dict[str, str]) -> QuerySet[AuditEntry]:
    """Entries matching the given filters (exact user/result/job, prefix action, text target).

    ``since``/``until`` are ISO dates or times. Raises ``ValidationError`` for a
    value that cannot be a filter, so a typo never silently shows everything.
    """
    entries = AuditEntry.objects.all()
    if filters.get("actor"):
        entries = entries.filter(actor=filters["actor"])
    if filters.get("action"):
        entries = entries.filter(action__startswith=filters["action"])
    if filters.get("target"):
        entries = entries.filter(target__icontains=filters["target"])
    if filters.get("result"):
        if filters["result"] not in AuditResult.values:
            raise ValidationError(
                f"unknown result {filters['result']!r}: one of {', '.join(AuditResult.values)}"
            )
        entries = entries.filter(result=filters["result"])
    if filters.get("job"):
        if not str(filters["job"]).isdigit():
            raise ValidationError(f"job must be a job number, not {filters['job']!r}")
        entries = entries.filter(job_id=int(filters["job"]))
    for key, lookup in (("since", "at__gte"), ("until", "at__lte")):
        if filters.get(key):
            entries = entries.filter(**{lookup: _when(key, filters[key])})
    return entries


def _when(key: str, value: str) -> datetime:
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise ValidationError(f"{key} must be a date (2025-01-31) or time, not {value!r}")
        moment = datetime.combine(day, time.min)
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, UTC)
