"""Downsampling and pruning, with generated rows over a simulated year."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nodes.models import Node
from stats.models import NodeRollup, NodeSample, Resolution, VmRollup, VmSample
from stats.services.retention import run_retention
from tests.support.factories import make_node, make_vm
from vms.models import VirtualMachine

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def add_samples(vm: VirtualMachine, node: Node, start: datetime, values: list[float], step: int):
    VmSample.objects.bulk_create(
        VmSample(vm=vm, node=node, at=start + timedelta(seconds=i * step), cpu_pct=v, mem_pct=v / 2)
        for i, v in enumerate(values)
    )
    NodeSample.objects.bulk_create(
        NodeSample(node=node, at=start + timedelta(seconds=i * step), cpu_pct=v, running_vms=1)
        for i, v in enumerate(values)
    )


def test_minute_and_hour_rollups_keep_min_avg_max() -> None:
    node = make_node()
    vm = make_vm(node)
    # Minute 0: 10, 20, 30 (gap: one sample with no CPU figure); minute 1: 40.
    add_samples(vm, node, T0, [10.0, 20.0, 30.0], step=15)
    VmSample.objects.create(vm=vm, node=node, at=T0 + timedelta(seconds=50), cpu_pct=None)
    add_samples(vm, node, T0 + timedelta(minutes=1), [40.0], step=5)
    result = run_retention(now=T0 + timedelta(hours=1, minutes=5))
    assert result.minute_rollups == 4  # two minutes, VM and node
    first = VmRollup.objects.get(vm=vm, resolution=Resolution.MINUTE, start=T0)
    assert (first.samples, first.cpu_pct_min, first.cpu_pct_avg, first.cpu_pct_max) == (
        4,
        10.0,
        20.0,
        30.0,
    )
    hour = VmRollup.objects.get(vm=vm, resolution=Resolution.HOUR, start=T0)
    assert hour.samples == 5
    # Weighted by the samples that had a CPU figure: (10+20+30+40)/4, not a mean of means.
    assert hour.cpu_pct_avg == pytest.approx(25.0)
    assert (hour.cpu_pct_min, hour.cpu_pct_max) == (10.0, 40.0)
    assert hour.mem_pct_max == 20.0
    node_hour = NodeRollup.objects.get(node=node, resolution=Resolution.HOUR, start=T0)
    assert node_hour.running_vms_avg == 1.0
    # Running it again adds nothing (idempotent) and raw rows are still within 24 h.
    again = run_retention(now=T0 + timedelta(hours=1, minutes=6))
    assert (again.minute_rollups, again.hour_rollups) == (0, 0)
    assert VmSample.objects.count() == 5


def test_raw_samples_are_kept_until_rolled_up() -> None:
    node = make_node()
    vm = make_vm(node)
    add_samples(vm, node, T0, [50.0] * 10, step=5)
    # Retention ran for the first time two days later: the rows are rolled up first.
    run_retention(now=T0 + timedelta(days=2))
    assert VmSample.objects.count() == 0
    assert VmRollup.objects.get(vm=vm, resolution=Resolution.MINUTE).cpu_pct_avg == 50.0
    assert VmRollup.objects.get(vm=vm, resolution=Resolution.HOUR).samples == 10


def test_a_simulated_year_stays_bounded(settings: object) -> None:
    """Two VMs sampled every 4 h for 365 days, retention run every third simulated day
    (so each run also catches up a backlog).

    Sparse samples keep the test fast; the bounds depend on the retention windows,
    not on the sampling rate (bench/stats_retention.py measures 5 s sampling).
    """
    node = make_node()
    vms = [make_vm(node), make_vm(node)]
    step = 4 * 3600
    per_day = 86400 // step
    peaks: dict[str, int] = {"raw": 0, "minute": 0, "hour": 0}
    for first_day in range(0, 365, 3):
        for day in range(first_day, min(first_day + 3, 365)):
            start = T0 + timedelta(days=day)
            for index, vm in enumerate(vms):
                add_samples(vm, node, start, [float((day + index) % 100)] * per_day, step=step)
        run_retention(now=start + timedelta(days=1))
        peaks["raw"] = max(peaks["raw"], VmSample.objects.count())
        peaks["minute"] = max(
            peaks["minute"], VmRollup.objects.filter(resolution=Resolution.MINUTE).count()
        )
        peaks["hour"] = max(
            peaks["hour"], VmRollup.objects.filter(resolution=Resolution.HOUR).count()
        )
    end = T0 + timedelta(days=365)
    # Raw: at most the last 24 h (+ the minute still inside the grace period).
    assert peaks["raw"] <= 2 * (per_day + 1)
    # Minute rollups: 30 days of the minutes that had samples.
    assert peaks["minute"] <= 2 * per_day * 31
    oldest_minute = VmRollup.objects.filter(resolution=Resolution.MINUTE).order_by("start").first()
    assert oldest_minute is not None and end - oldest_minute.start <= timedelta(days=30, hours=1)
    # Hour rollups: the whole year (365 days × 24 h), nothing older.
    assert peaks["hour"] <= 2 * 24 * 366
    oldest_hour = VmRollup.objects.filter(resolution=Resolution.HOUR).order_by("start").first()
    assert oldest_hour is not None and oldest_hour.start == T0
    # One more day: the first day's hours fall out of the one-year window.
    run_retention(now=end + timedelta(days=1, hours=2))
    oldest_hour = VmRollup.objects.filter(resolution=Resolution.HOUR).order_by("start").first()
    assert oldest_hour is not None and oldest_hour.start > T0
    # Every day's value survived into the hour rollups.
    mid = VmRollup.objects.get(
        vm=vms[1], resolution=Resolution.HOUR, start=T0 + timedelta(days=200, hours=4)
    )
    assert mid.cpu_pct_avg == float((200 + 1) % 100)
    assert NodeRollup.objects.filter(resolution=Resolution.HOUR).count() <= 24 * 366
