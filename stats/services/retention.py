"""Downsampling and pruning: what keeps the stats tables bounded whatever the uptime.

Raw samples → per-minute and per-hour rollups (min/avg/max and sample count), both
computed from the raw samples so hour averages are exact (not means of minute means,
which would mis-weight minutes with gaps). A raw sample is deleted only once it is
older than its retention *and* rolled up at both resolutions, so a rollup that fell
behind never loses data. Rollups are idempotent
(unique per VM/node, resolution and start; conflicts ignored).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import models, transaction
from django.db.models import Count, Max, Min
from django.db.models.functions import TruncHour, TruncMinute
from django.utils import timezone

from stats.models import (
    NODE_METRICS,
    VM_METRICS,
    NodeRollup,
    NodeSample,
    Resolution,
    VmRollup,
    VmSample,
)

# Raw samples of the last minute may still be arriving (a slow node's cycle).
GRACE_INTERVALS = 3
# Bound each aggregation query (and its transaction) when catching up a backlog.
CHUNK = timedelta(hours=6)


@dataclass(frozen=True)
class RetentionResult:
    minute_rollups: int
    hour_rollups: int
    deleted: dict[str, int]


def _floor(moment: datetime, seconds: int) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


def _earliest(*values: datetime | None) -> datetime | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _watermark(resolution: int) -> datetime | None:
    """End of the last bucket rolled up at ``resolution`` (VM or node rollups)."""
    lasts = [
        model.objects.filter(resolution=resolution).aggregate(last=Max("start"))["last"]
        for model in (VmRollup, NodeRollup)
    ]
    present = [last for last in lasts if last is not None]
    return max(present) + timedelta(seconds=resolution) if present else None


def _next_raw(since: datetime) -> datetime | None:
    """The first raw sample at or after ``since``: lets a rollup skip empty stretches."""
    return _earliest(
        VmSample.objects.filter(at__gte=since).aggregate(first=Min("at"))["first"],
        NodeSample.objects.filter(at__gte=since).aggregate(first=Min("at"))["first"],
    )


def _raw_aggregates(metrics: tuple[str, ...]) -> dict[str, models.Aggregate]:
    result: dict[str, models.Aggregate] = {"samples": Count("id")}
    for name in metrics:
        result[f"{name}_min"] = Min(name)
        result[f"{name}_avg"] = models.Avg(name)
        result[f"{name}_max"] = Max(name)
    return result


def _rollup_range(
    source: models.QuerySet, owner: str, time_field: str, trunc: type, aggregates: dict
) -> list[dict]:
    return list(
        source.annotate(bucket=trunc(time_field, tzinfo=UTC))
        .values(owner, "bucket")
        .annotate(**aggregates)
        .order_by()
    )


def _write(model: type[models.Model], owner: str, resolution: int, rows: list[dict]) -> int:
    objects = []
    for row in rows:
        values = {k: v for k, v in row.items() if k not in {owner, "bucket"}}
        objects.append(
            model(
                **{owner: row[owner]},
                resolution=resolution,
                start=row["bucket"],
                **values,
            )
        )
    model.objects.bulk_create(objects, batch_size=500, ignore_conflicts=True)
    return len(objects)


def _rollup_window(start: datetime, end: datetime, trunc: type, resolution: int) -> int:
    """Aggregate the raw samples in [start, end) into ``resolution`` buckets."""
    vm_aggs = _raw_aggregates(VM_METRICS)
    node_aggs = _raw_aggregates(NODE_METRICS)
    vm_rows = _rollup_range(
        VmSample.objects.filter(at__gte=start, at__lt=end), "vm_id", "at", trunc, vm_aggs
    )
    node_rows = _rollup_range(
        NodeSample.objects.filter(at__gte=start, at__lt=end), "node_id", "at", trunc, node_aggs
    )
    return _write(VmRollup, "vm_id", resolution, vm_rows) + _write(
        NodeRollup, "node_id", resolution, node_rows
    )


def rollup_minutes(now: datetime) -> tuple[int, datetime]:
    """Roll up every complete minute not yet rolled up; returns (rows, rolled-up-until)."""
    until = _floor(now - timedelta(seconds=GRACE_INTERVALS * settings.KVMMGR_STATS_INTERVAL), 60)
    start = _watermark(Resolution.MINUTE) or datetime.min.replace(tzinfo=UTC)
    written = 0
    while start < until:
        first = _next_raw(start)
        if first is None or first >= until:
            break
        start = max(start, _floor(first, 60))
        end = min(start + CHUNK, until)
        with transaction.atomic():
            written += _rollup_window(start, end, TruncMinute, Resolution.MINUTE)
        start = end
    return written, until


def rollup_hours(minutes_until: datetime) -> tuple[int, datetime]:
    """Roll up every complete hour, from the raw samples (still there: they are pruned
    only once rolled up at both resolutions), so averages are exact rather than means
    of minute means."""
    until = _floor(minutes_until, 3600)
    start = _watermark(Resolution.HOUR) or datetime.min.replace(tzinfo=UTC)
    written = 0
    while start < until:
        first = _next_raw(start)
        if first is None or first >= until:
            break
        start = max(start, _floor(first, 3600))
        end = min(start + CHUNK, until)
        with transaction.atomic():
            written += _rollup_window(start, end, TruncHour, Resolution.HOUR)
        start = end
    return written, until


def prune(now: datetime, rolled_up_until: datetime) -> dict[str, int]:
    """Delete what is past its retention; raw samples only once rolled up."""
    raw_cutoff = min(now - timedelta(hours=settings.KVMMGR_STATS_RAW_HOURS), rolled_up_until)
    cutoffs = {
        Resolution.MINUTE: now - timedelta(days=settings.KVMMGR_STATS_MINUTE_DAYS),
        Resolution.HOUR: now - timedelta(days=settings.KVMMGR_STATS_HOUR_DAYS),
    }
    deleted = {
        "vm samples": VmSample.objects.filter(at__lt=raw_cutoff).delete()[0],
        "node samples": NodeSample.objects.filter(at__lt=raw_cutoff).delete()[0],
    }
    for resolution, cutoff in cutoffs.items():
        deleted[f"{resolution.label} rollups"] = sum(
            model.objects.filter(resolution=resolution, start__lt=cutoff).delete()[0]
            for model in (VmRollup, NodeRollup)
        )
    return deleted


def run_retention(now: datetime | None = None) -> RetentionResult:
    """Roll up what is complete, then prune: the periodic task and ``prunestats``."""
    now = now or timezone.now()
    minutes, minutes_until = rollup_minutes(now)
    hours, hours_until = rollup_hours(minutes_until)
    deleted = prune(now, min(minutes_until, hours_until))
    return RetentionResult(minute_rollups=minutes, hour_rollups=hours, deleted=deleted)
