"""VM list page (``vms:vm_list``) with 1,000 VMs: 100 nodes × 10 and 10 nodes × 100.

Rows are created with the ORM on test:/// nodes (no host is contacted); the page is
requested through Django's test Client, logged in, in this process. Baseline: the
same page with one node and no VMs, measured in the same run.

    .venv/bin/python -m bench.vm_list [--runs 50] [--warmup 5] [--profile] [--json OUT]

Goal (issue): median < 200 ms for 1,000 VMs.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import sys
from typing import Any

from bench import _common

GOAL_MS = 200.0
SHAPES = [(100, 10), (10, 100)]


def profile_page(client: Any, runs: int = 5) -> str:
    """cProfile of a few page requests: top functions by cumulative and own time."""
    from django.urls import reverse

    url = reverse("vms:vm_list")
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(runs):
        client.get(url)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    out.write(f"--- cProfile over {runs} requests, by cumulative time ---\n")
    stats.sort_stats("cumulative").print_stats(25)
    out.write(f"--- cProfile over {runs} requests, by own time ---\n")
    stats.sort_stats("tottime").print_stats(20)
    # Shorten paths (site-packages/..., repo-relative) without merging same-named files.
    text = out.getvalue()
    for prefix in sorted({p for p in sys.path if p}, key=len, reverse=True):
        text = text.replace(prefix.rstrip("/") + "/", "")
    return text.replace(str(_common.REPO) + "/", "")


def run(runs: int, warmup: int, profile: bool) -> dict[str, Any]:
    data_dir = _common.setup_django()
    try:
        _common.ensure_row_template()
        client = _common.logged_in_client()
        results: list[_common.PageResult] = []
        _common.seed_inventory(1, 0, prefix="base")
        baseline = _common.time_page(
            client, "baseline: 1 node, 0 VMs", nodes=1, vms=0, runs=runs, warmup=warmup
        )
        results.append(baseline)
        profiles: dict[str, str] = {}
        for nodes, per_node in SHAPES:
            _common.clear_inventory()
            _common.seed_inventory(nodes, per_node)
            label = f"{nodes} nodes × {per_node} VMs"
            results.append(
                _common.time_page(
                    client, label, nodes=nodes, vms=nodes * per_node, runs=runs, warmup=warmup
                )
            )
            if profile:
                profiles[label] = profile_page(client)
        return {
            "machine": _common.machine(),
            "runs": runs,
            "warmup": warmup,
            "goal_ms": GOAL_MS,
            "baseline_median_ms": baseline.stats.median_ms,
            "results": [r.as_dict() for r in results],
            "profiles": profiles,
            "workarounds": list(_common.WORKAROUNDS),
        }
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def report(payload: dict[str, Any]) -> str:
    base = payload["baseline_median_ms"]
    lines = [
        f"VM list page, {payload['runs']} timed requests after {payload['warmup']} warm-ups",
        "| case | VMs | median | p95 | × baseline | SQL/request | page size | goal p50 < 200 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in payload["results"]:
        s = r["stats"]
        verdict = "—" if r["vms"] == 0 else ("pass" if s["median_ms"] < GOAL_MS else "FAIL")
        lines.append(
            f"| {r['label']} | {r['vms']} | {_common.fmt_ms(s['median_ms'])} | "
            f"{_common.fmt_ms(s['p95_ms'])} | {s['median_ms'] / base:.1f}× | {r['queries']} | "
            f"{r['bytes'] / 1024:.0f} KiB | {verdict} |"
        )
    lines += [f"NOTE: {w}" for w in payload.get("workarounds", [])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="print cProfile of the 1k cases")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    payload = run(args.runs, args.warmup, args.profile)
    print(report(payload))
    for label, text in payload["profiles"].items():
        print(f"\n## profile: {label}\n{text}")
    _common.write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
