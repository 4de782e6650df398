"""Inventory refresh of one test-driver node with 1,000 domains.

``vms.services.inventory.refresh_node`` is timed on its first run (1,000 inserts,
cold libvirt connection) and in steady state (1,000 updates, pooled connection),
median of several runs. The time is split between the libvirt listing
(``nodes.hypervisor.list_domains``) and the database write (``apply_inventory``
plus the node update and commit) by timing wrappers around the two module-level
names that ``refresh_node`` calls; nothing in the product is changed.

    .venv/bin/python -m bench.inventory_refresh [--domains 1000] [--runs 7] [--profile]

Goal (issue): < 1 s for 1,000 domains.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import _common

GOAL_S = 1.0


class _Timed:
    """Wraps a function and records how long each call took."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.calls: list[float] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.func(*args, **kwargs)
        finally:
            self.calls.append(time.perf_counter() - started)


def _one_refresh(node: Any) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from vms.services import inventory

    listing = _Timed(inventory.list_domains)
    writing = _Timed(inventory.apply_inventory)
    original = (inventory.list_domains, inventory.apply_inventory)
    inventory.list_domains, inventory.apply_inventory = listing, writing  # type: ignore[assignment]
    # Newer refresh_node also reads node facts (pools, networks) every FACTS_INTERVAL.
    facts_original = getattr(inventory, "collect_facts", None)
    facts = _Timed(facts_original) if facts_original is not None else None
    if facts is not None:
        inventory.collect_facts = facts  # type: ignore[attr-defined]
    try:
        with CaptureQueriesContext(connection) as ctx:
            started = time.perf_counter()
            result = inventory.refresh_node(node)
            total = time.perf_counter() - started
    finally:
        inventory.list_domains, inventory.apply_inventory = original  # type: ignore[assignment]
        if facts_original is not None:
            inventory.collect_facts = facts_original  # type: ignore[attr-defined]
    if not result.ok:
        raise RuntimeError(f"refresh failed: {result.error}")
    facts_s = sum(facts.calls) if facts is not None else 0.0
    # libvirt time: the domain listing plus, when due, the facts read.
    list_s = sum(listing.calls) + facts_s
    apply_s = sum(writing.calls)
    # Time spent inside cursor.execute (SQLite itself), as Django's debug cursor records it.
    sql_s = sum(float(q["time"]) for q in ctx.captured_queries)
    return {
        "sql_s": sql_s,
        "facts_s": facts_s,
        "total_s": total,
        "list_s": list_s,
        "apply_s": apply_s,
        # Node row update, transaction begin/commit, RefreshResult.
        "other_s": total - list_s - apply_s,
        "queries": len(ctx.captured_queries),
        "created": result.created,
        "updated": result.updated,
        "domains": result.domains,
    }


def _profile(node: Any, runs: int = 3) -> str:
    from vms.services import inventory

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(runs):
        inventory.refresh_node(node)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    out.write(f"--- cProfile over {runs} steady-state refreshes, by cumulative time ---\n")
    stats.sort_stats("cumulative").print_stats(30)
    out.write(f"--- cProfile over {runs} steady-state refreshes, by own time ---\n")
    stats.sort_stats("tottime").print_stats(15)
    text = out.getvalue()
    for prefix in sorted({p for p in sys.path if p}, key=len, reverse=True):
        text = text.replace(prefix.rstrip("/") + "/", "")
    return text.replace(str(_common.REPO) + "/", "")


def run(domains: int, runs: int, profile: bool) -> dict[str, Any]:
    data_dir = _common.setup_django()
    try:
        from nodes.hypervisor import close_all
        from nodes.models import Node
        from tests.support.nodexml import make_domains, write_node_xml

        started = time.perf_counter()
        path = write_node_xml(Path(data_dir) / f"node{domains}.xml", make_domains(domains))
        xml_s = time.perf_counter() - started
        node = Node.objects.create(name=f"bench{domains}", uri=f"test://{path.resolve()}")
        first = _one_refresh(node)
        steady = [_one_refresh(node) for _ in range(runs)]
        # One refresh on a freshly opened connection (a worker process's first task).
        close_all()
        reconnect = _one_refresh(node)
        profile_text = _profile(node) if profile else ""
        close_all()

        def med(key: str) -> float:
            return statistics.median(r[key] for r in steady)

        return {
            "machine": _common.machine(),
            "domains": domains,
            "runs": runs,
            "goal_s": GOAL_S,
            "xml_write_s": xml_s,
            "xml_bytes": path.stat().st_size,
            "first": first,
            "steady_runs": steady,
            "steady": {
                "total_s": med("total_s"),
                "max_total_s": max(r["total_s"] for r in steady),
                "list_s": med("list_s"),
                "apply_s": med("apply_s"),
                "other_s": med("other_s"),
                "sql_s": med("sql_s"),
                "facts_s": med("facts_s"),
                "queries": steady[-1]["queries"],
                "updated": steady[-1]["updated"],
            },
            "reconnect": reconnect,
            "profile": profile_text,
        }
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def report(p: dict[str, Any]) -> str:
    def row(label: str, r: dict[str, Any], rows: str) -> str:
        total = r["total_s"]
        verdict = "pass" if total < p["goal_s"] else "FAIL"
        return (
            f"| {label} | {rows} | {_common.fmt_ms(total * 1000)} | "
            f"{_common.fmt_ms(r['list_s'] * 1000)} ({r['list_s'] / total:.0%}) | "
            f"{_common.fmt_ms(r['apply_s'] * 1000)} ({r['apply_s'] / total:.0%}) | "
            f"{_common.fmt_ms(r['sql_s'] * 1000)} | "
            f"{_common.fmt_ms(r['other_s'] * 1000)} | {r['queries']} | {verdict} |"
        )

    f, s, c = p["first"], p["steady"], p["reconnect"]
    return "\n".join(
        [
            f"Inventory refresh of one test:/// node with {p['domains']} domains "
            f"(XML {p['xml_bytes'] / 1024:.0f} KiB); steady state = median of {p['runs']} runs",
            "| run | rows | total | libvirt (list_domains + facts) | DB apply_inventory "
            "| of which in SQLite "
            "| rest | SQL queries | goal < 1 s |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|",
            row("first (cold connection)", f, f"{f['created']} inserted"),
            row(f"steady state (median of {p['runs']})", s, f"{s['updated']} updated"),
            row("steady, connection reopened", c, f"{c['updated']} updated"),
            f"steady-state max: {_common.fmt_ms(s['max_total_s'] * 1000)}; facts read "
            f"(collect_facts, inside the libvirt column): first run "
            f"{_common.fmt_ms(f['facts_s'] * 1000)}, steady median "
            f"{_common.fmt_ms(s['facts_s'] * 1000)}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="print a steady-state cProfile")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    payload = run(args.domains, args.runs, args.profile)
    print(report(payload))
    if payload["profile"]:
        print("\n" + payload["profile"])
    _common.write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
