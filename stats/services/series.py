"""Chart data read from the stats tables: one VM's or node's series, and sparklines.

Each range reads one resolution — raw samples for the last hour, minute rollups for a
day, hour rollups beyond — plus the raw samples newer than the last rollup, so a
chart reaches "now" even though rollups lag by up to one bucket. Every function is
one or two queries with ``values_list`` (no model instances).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
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


@dataclass(frozen=True)
class Range:
    key: str
    label: str
    seconds: int
    resolution: int | None  # None: raw samples


RANGES: dict[str, Range] = {
    r.key: r
    for r in (
        Range("1h", "1 hour", 3600, None),
        Range("24h", "24 hours", 86400, Resolution.MINUTE),
        Range("7d", "7 days", 7 * 86400, Resolution.HOUR),
        Range("30d", "30 days", 30 * 86400, Resolution.HOUR),
    )
}
DEFAULT_RANGE = "1h"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _series(
    raw: models.QuerySet,
    rollups: models.QuerySet,
    metrics: tuple[str, ...],
    span: Range,
    now: datetime,
) -> dict[str, Any]:
    since = now - timedelta(seconds=span.seconds)
    times: list[float] = []
    columns: dict[str, list[float | None]] = {}
    names = list(metrics)
    if span.resolution is not None:
        names += [f"{m}_{agg}" for m in metrics for agg in ("min", "max")]
    for name in names:
        columns[name] = []
    tail_since = since
    if span.resolution is not None:
        fields = [f"{m}_{agg}" for m in metrics for agg in ("avg", "min", "max")]
        rows = rollups.filter(resolution=span.resolution, start__gte=since).order_by("start")
        last: datetime | None = None
        for start, *values in rows.values_list("start", *fields):
            # A bucket is drawn at its middle.
            times.append(start.timestamp() + span.resolution / 2)
            for index, metric in enumerate(metrics):
                avg, low, high = values[3 * index : 3 * index + 3]
                columns[metric].append(_round(avg))
                columns[f"{metric}_min"].append(_round(low))
                columns[f"{metric}_max"].append(_round(high))
            last = start
        if last is not None:
            tail_since = last + timedelta(seconds=span.resolution)
    for at, *values in raw.filter(at__gte=tail_since).order_by("at").values_list("at", *metrics):
        times.append(at.timestamp())
        for metric, value in zip(metrics, values, strict=True):
            columns[metric].append(_round(value))
            if span.resolution is not None:
                columns[f"{metric}_min"].append(_round(value))
                columns[f"{metric}_max"].append(_round(value))
    return {
        "range": span.key,
        "resolution": span.resolution or settings.KVMMGR_STATS_INTERVAL,
        "since": since.timestamp(),
        "now": now.timestamp(),
        "t": times,
        **columns,
    }


def vm_series(vm_id: int, range_key: str, now: datetime | None = None) -> dict[str, Any]:
    """A VM's chart data over ``range_key`` (one of ``RANGES``), across every node it ran on."""
    return _series(
        VmSample.objects.filter(vm_id=vm_id),
        VmRollup.objects.filter(vm_id=vm_id),
        VM_METRICS,
        RANGES[range_key],
        now or timezone.now(),
    )


def node_series(node_id: int, range_key: str, now: datetime | None = None) -> dict[str, Any]:
    return _series(
        NodeSample.objects.filter(node_id=node_id),
        NodeRollup.objects.filter(node_id=node_id),
        NODE_METRICS,
        RANGES[range_key],
        now or timezone.now(),
    )


def sparklines(now: datetime | None = None) -> dict[str, Any]:
    """The recent CPU and memory % of every VM sampled lately: one query for the page.

    The VM list asks for this once (and again every interval) and draws every row's
    sparkline in the browser, so the page itself stays one query for its VMs.
    """
    now = now or timezone.now()
    points = settings.KVMMGR_STATS_SPARKLINE_POINTS
    interval = settings.KVMMGR_STATS_INTERVAL
    since = now - timedelta(seconds=points * interval)
    by_vm: dict[str, dict[str, list[float | None]]] = {}
    rows = (
        VmSample.objects.filter(at__gte=since)
        .order_by("at")
        .values_list("vm__uuid", "at", "cpu_pct", "mem_pct")
    )
    for uuid, at, cpu, mem in rows:
        line = by_vm.setdefault(str(uuid), {"t": [], "cpu": [], "mem": []})
        line["t"].append(int(at.timestamp()))
        line["cpu"].append(_round(cpu))
        line["mem"].append(_round(mem))
    return {"interval": interval, "since": since.timestamp(), "vms": by_vm}


def vm_table(vm_id: int, since: datetime) -> tuple[int | None, list[tuple]]:
    """Rows for ``manage.py stats``: (time, node name, *VM_METRICS) since ``since``.

    Raw samples while ``since`` is within the raw window, else the finest rollup that
    still covers it (averages; the node column is then empty). Returns (resolution
    in seconds or None for raw, rows).
    """
    now = timezone.now()
    raw_window = timedelta(hours=settings.KVMMGR_STATS_RAW_HOURS)
    if now - since <= raw_window:
        rows = (
            VmSample.objects.filter(vm_id=vm_id, at__gte=since)
            .order_by("at")
            .values_list("at", "node__name", *VM_METRICS)
        )
        return None, list(rows)
    minute_window = timedelta(days=settings.KVMMGR_STATS_MINUTE_DAYS)
    resolution = Resolution.MINUTE if now - since <= minute_window else Resolution.HOUR
    rows = (
        VmRollup.objects.filter(vm_id=vm_id, resolution=resolution, start__gte=since)
        .order_by("start")
        .values_list("start", *[f"{m}_avg" for m in VM_METRICS])
    )
    return int(resolution), [(start, "", *values) for start, *values in rows]
