"""Run every benchmark (each in its own process and temp database) and print a summary.

    .venv/bin/python -m bench.run_all [--quick] [--profile] [--migration] [--out DIR]

Each benchmark's own report is printed as it finishes, then one markdown table of
the figures against the goals. ``--out`` keeps the JSON of every benchmark.
``--migration`` adds ``bench.migration`` (root, the real two-node lab, ~7 minutes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import _common


def _run(module: str, args: list[str], out_dir: Path) -> dict[str, Any]:
    json_path = out_dir / f"{module.rsplit('.', 1)[-1]}.json"
    command = [sys.executable, "-m", module, *args, "--json", str(json_path)]
    print(f"$ {' '.join(command[1:])}", flush=True)
    subprocess.run(command, check=True, cwd=_common.REPO)
    print(flush=True)
    return json.loads(json_path.read_text(encoding="utf-8"))


def summary(vm_list: dict[str, Any], blackhole: dict[str, Any], refresh: dict[str, Any]) -> str:
    ms = _common.fmt_ms
    rows: list[tuple[str, str, str, str]] = []
    base = vm_list["baseline_median_ms"]
    for r in vm_list["results"]:
        s = r["stats"]
        if r["vms"] == 0:
            rows.append((f"VM list, {r['label']}", f"{ms(s['median_ms'])} p50", "baseline", "—"))
            continue
        rows.append(
            (
                f"VM list, {r['label']}",
                f"{ms(s['median_ms'])} p50, {ms(s['p95_ms'])} p95, {r['queries']} SQL, "
                f"{r['bytes'] / 1024:.0f} KiB ({s['median_ms'] / base:.0f}× baseline)",
                "p50 < 200 ms",
                "pass" if s["median_ms"] < vm_list["goal_ms"] else "FAIL",
            )
        )
    off = blackhole["offline"]
    marked = bool(off["last_error"]) and off["status_label"] == "offline"
    rows.append(
        (
            "Blackholed node: refresh → offline",
            f"{off['seconds']:.2f} s, status {off['status_label']!r}",
            "offline within ~3 s",
            "INVALID (route changed mid-run)"
            if not (off["valid"] and blackhole["offline_concurrent"]["valid"])
            else "pass"
            if marked and off["seconds"] < off["goal_s"]
            else "FAIL",
        )
    )
    rows.append(
        (
            "VM list with / without blackholed node",
            f"{blackhole['page_with']['stats']['median_ms']:.1f} / "
            f"{blackhole['page_without']['stats']['median_ms']:.1f} ms = "
            f"{blackhole['page_ratio']:.2f}×",
            "≈ 1× (page never contacts nodes)",
            "pass" if blackhole["page_ratio"] < 1.2 else "FAIL",
        )
    )
    probe = blackhole["probe_refresh"]
    during = probe["during"]["median_ms"]
    normal = max(probe["before"]["median_ms"], probe["after"]["median_ms"])
    rows.append(
        (
            "Other node's refresh during blackholed refresh",
            f"{probe['before']['median_ms']:.1f} / {during:.1f} / "
            f"{probe['after']['median_ms']:.1f} ms (before / during / after)",
            "not delayed",
            "pass" if during < 1.5 * normal else "FAIL",
        )
    )
    for key, label in (("first", "first run (inserts)"), ("steady", "steady state (updates)")):
        r = refresh[key]
        rows.append(
            (
                f"Refresh {refresh['domains']} domains, {label}",
                f"{ms(r['total_s'] * 1000)} = list {ms(r['list_s'] * 1000)} + "
                f"DB {ms(r['apply_s'] * 1000)} (SQLite {ms(r['sql_s'] * 1000)})",
                "< 1 s",
                "pass" if r["total_s"] < refresh["goal_s"] else "FAIL",
            )
        )
    lines = ["| benchmark | measured | goal | result |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    notes = sorted(set(vm_list.get("workarounds", []) + blackhole.get("workarounds", [])))
    lines += ["", *[f"NOTE: {n}" for n in notes]] if notes else []
    return "\n".join(lines)


def migration_summary(mig: dict[str, Any]) -> str:
    """Rows for ``bench.migration``: product vs raw, and the fast-dirtying guest."""
    rows = ["| migration benchmark | measured | goal | result |", "|---|---|---|---|"]
    for name, r in mig["pairs"].items():
        rows.append(
            f"| {name} ({r['workload']}): product vs raw virsh | "
            f"{r['product_median_s']:.2f} / {r['raw_median_s']:.2f} s = {r['ratio']:.2f}× | "
            f"≤ {r['goal_s']:.2f} s (1.05× raw + 0.5 s) | "
            f"{'pass' if r['meets_goal'] else 'FAIL'} |"
        )
        if r["workload"] == "idle":
            worst = max((d for d in r["product_downtime_ms"] if d is not None), default=None)
            rows.append(
                f"| {name}: downtime | max {worst} ms | ≤ 300 ms | "
                f"{'pass' if worst is not None and worst <= 300 else 'FAIL'} |"
            )
    for c in mig.get("convergence", []):
        rows.append(
            f"| {c['case']} | {'converged' if c['converged'] else c['status']}, "
            f"{c['wall_s']:.1f} s, downtime {c['downtime_ms']} ms | — | — |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--profile", action="store_true", help="print cProfile sections")
    parser.add_argument(
        "--migration", action="store_true", help="also run bench.migration (root, real lab)"
    )
    parser.add_argument("--out", help="directory for the JSON results (default: a temp dir)")
    args = parser.parse_args(argv)
    out_dir = Path(args.out or tempfile.mkdtemp(prefix="kvmmgr-bench-out-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    page_runs = ["--runs", "10", "--warmup", "2"] if args.quick else []
    profile = ["--profile"] if args.profile else []
    vm_list = _run("bench.vm_list", page_runs + profile, out_dir)
    blackhole = _run("bench.blackhole", page_runs, out_dir)
    refresh = _run(
        "bench.inventory_refresh", (["--runs", "3"] if args.quick else []) + profile, out_dir
    )
    migration = _run("bench.migration", [], out_dir) if args.migration else None
    m = vm_list["machine"]
    print(
        f"## Summary ({m['date']}; {m['cpu']}; {m['os']}; Python {m['python']}, "
        f"Django {m['django']}, SQLite {m['sqlite']}, libvirt {m['libvirt']})\n"
    )
    print(summary(vm_list, blackhole, refresh))
    if migration is not None:
        print()
        print(migration_summary(migration))
    print(f"\nJSON results: {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
