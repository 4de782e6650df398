"""Stats storage after a simulated year: chart JSON time and table size, bounded.

100 VMs sampled every 5 s for a year would write 630 M raw rows; what retention keeps
is 24 h of raw samples, 30 days of minute rollups and 365 days of hour rollups. The
script writes exactly that steady state with SQL (SQLite generates the rows; the ORM
would take hours), plus a margin of rows *older* than each window (as if pruning had
stopped for a while), then runs ``run_retention`` at the end of the year and reports
what it removed, the rows and megabytes left per table, and the time of the chart
JSON endpoint for one VM over each range (30 days: goal < 100 ms).

    .venv/bin/python -m bench.stats_retention [--vms 100] [--runs 20]
"""

from __future__ import annotations

import argparse
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import _common

GOAL_MS = 100.0
STEP = 5


def _metric_columns(model: type) -> list[str]:
    return [f.column for f in model._meta.concrete_fields if f.get_internal_type() == "FloatField"]


def _fill(  # noqa: PLR0917 (one generator for four tables)
    cursor: Any,
    table: str,
    owner: str,
    columns: list[str],
    extra: dict[str, str],
    first_vm: int,
    vms: int,
    start: float,
    end: float,
    step: int,
    time_col: str,
) -> int:
    """INSERT … SELECT from a recursive CTE: one row per VM per step in [start, end)."""
    values = ", ".join("abs(random() % 10000) / 100.0" for _ in columns)
    names = ", ".join([owner, time_col, *extra, *columns])
    extras = "".join(f", {value}" for value in extra.values())
    sql = f"""
    WITH RECURSIVE t(x) AS (SELECT ? UNION ALL SELECT x + ? FROM t WHERE x + ? < ?),
         v(id) AS (SELECT ? UNION ALL SELECT id + 1 FROM v WHERE id + 1 < ?)
    INSERT INTO {table} ({names})
    SELECT v.id, strftime('%Y-%m-%d %H:%M:%f', t.x, 'unixepoch'){extras}, {values}
    FROM t, v"""
    cursor.execute(sql, [start, step, step, end, first_vm, first_vm + vms])
    return cursor.rowcount


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", help="write results as JSON here")
    args = parser.parse_args()
    data_dir = _common.setup_django()
    try:
        run(args, data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _sizes(cursor: Any, tables: list[str]) -> dict[str, tuple[int, float]]:
    result = {}
    for table in tables:
        cursor.execute(f"SELECT count(*) FROM {table}")
        rows = cursor.fetchone()[0]
        cursor.execute(
            "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name = ? OR name IN "
            "(SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?)",
            [table, table],
        )
        result[table] = (rows, cursor.fetchone()[0] / 2**20)
    return result


def _time_series(vm_id: int, runs: int) -> dict[str, tuple[Any, int, int]]:
    """GET the VM's chart JSON for every range: (Stats, points, bytes) per range."""
    from django.urls import reverse

    from vms.models import VirtualMachine

    client = _common.logged_in_client()
    vm = VirtualMachine.objects.get(pk=vm_id)
    url = reverse("stats:vm_series", args=[vm.uuid])
    timings = {}
    for key in ("1h", "24h", "7d", "30d"):
        for _ in range(3):
            client.get(url, {"range": key})
        samples = []
        points = 0
        size = 0
        for _ in range(runs):
            t0 = time.perf_counter()
            response = client.get(url, {"range": key})
            samples.append(time.perf_counter() - t0)
            size = len(response.content)
            points = len(response.json()["t"])
        stats = _common.Stats.of(samples)
        timings[key] = (stats, points, size)

    return timings


def run(args: argparse.Namespace, data_dir: Path) -> None:
    from django.db import connection, transaction
    from django.utils import timezone

    from stats.models import NodeRollup, NodeSample, VmRollup, VmSample
    from stats.services.retention import run_retention

    nodes = _common.seed_inventory(1, args.vms)
    node = nodes[0]
    from vms.models import VirtualMachine

    vm_ids = sorted(VirtualMachine.objects.values_list("pk", flat=True))
    first_vm = vm_ids[0]
    now = timezone.now().replace(second=0, microsecond=0)
    end = now.timestamp()
    day, hour = 86400, 3600
    windows = {
        # table: (start, step, extra columns) — each window plus a stale margin before it.
        "raw": (end - day - 2 * hour, STEP),
        "minute": (end - 30 * day - day, 60),
        "hour": (end - 365 * day - 7 * day, 3600),
    }
    vm_cols = _metric_columns(VmSample)
    roll_cols = _metric_columns(VmRollup)
    node_roll_cols = _metric_columns(NodeRollup)
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        start, step = windows["raw"]
        _fill(
            cursor,
            VmSample._meta.db_table,
            "vm_id",
            vm_cols,
            {"node_id": str(node.pk)},
            first_vm,
            args.vms,
            start,
            end,
            step,
            "at",
        )
        _fill(
            cursor,
            NodeSample._meta.db_table,
            "node_id",
            _metric_columns(NodeSample),
            {},
            node.pk,
            1,
            start,
            end,
            step,
            "at",
        )
        for key, resolution in (("minute", 60), ("hour", 3600)):
            start, step = windows[key]
            stop = end - (end % resolution) - resolution  # the last complete bucket
            extra = {"resolution": str(resolution), "samples": str(resolution // STEP)}
            _fill(
                cursor,
                VmRollup._meta.db_table,
                "vm_id",
                roll_cols,
                extra,
                first_vm,
                args.vms,
                start,
                stop,
                step,
                "start",
            )
            _fill(
                cursor,
                NodeRollup._meta.db_table,
                "node_id",
                node_roll_cols,
                extra,
                node.pk,
                1,
                start,
                stop,
                step,
                "start",
            )
    fill_s = time.perf_counter() - started
    tables = [m._meta.db_table for m in (VmSample, NodeSample, VmRollup, NodeRollup)]
    with connection.cursor() as cursor:
        before = _sizes(cursor, tables)
    started = time.perf_counter()
    result = run_retention(now=now)
    prune_s = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("VACUUM")
        after = _sizes(cursor, tables)
    db_mb = (data_dir / "db.sqlite3").stat().st_size / 2**20

    timings = _time_series(first_vm, args.runs)

    print(_common.machine())
    print(
        f"{args.vms} VMs at {STEP} s; generated "
        f"{sum(r for r, _ in before.values()):,} rows in {fill_s:.1f} s"
    )
    print(f"run_retention at year end: {prune_s:.2f} s; {result}")
    print("table: rows before → after, MiB after (table + indexes)")
    for table in tables:
        print(f"  {table}: {before[table][0]:,} → {after[table][0]:,}, {after[table][1]:.1f} MiB")
    print(f"database file after VACUUM: {db_mb:.1f} MiB")
    for key, (stats, points, size) in timings.items():
        verdict = ""
        if key == "30d":
            verdict = f" goal < {GOAL_MS:g} ms: {'pass' if stats.median_ms < GOAL_MS else 'FAIL'}"
        print(
            f"  series {key}: {points} points, {size / 1024:.0f} KiB, p50 "
            f"{stats.median_ms:.1f} ms, p95 {stats.p95_ms:.1f} ms{verdict}"
        )
    _common.write_json(
        args.json,
        {
            "rows_after": {t: after[t][0] for t in tables},
            "mib_after": {t: after[t][1] for t in tables},
            "db_mib": db_mb,
            "series_ms": {k: v[0].median_ms for k, v in timings.items()},
            "retention_s": prune_s,
            "deleted": result.deleted,
            "window_end": str(now - timedelta(0)),
        },
    )


if __name__ == "__main__":
    main()
