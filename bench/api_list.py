"""``GET /api/v1/vms/`` with 1,000 VMs (10 nodes × 100), with an API token.

Rows come from the ORM on test:/// nodes (no host is contacted); requests go
through Django's test Client in this process, authenticated by an API token as a
script would be. Baselines in the same run: the same endpoint with no VMs, and
the VM list page (HTML) with the same 1,000 VMs.

    .venv/bin/python -m bench.api_list [--runs 200] [--warmup 10] [--json OUT]

Goal: median < 100 ms for 1,000 VMs.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from bench import _common

GOAL_MS = 100.0


def _time(client: Any, url: str, runs: int, warmup: int, **headers: str) -> _common.Stats:
    for _ in range(warmup):
        response = client.get(url, **headers)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}")
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        client.get(url, **headers)
        times.append(time.perf_counter() - started)
    return _common.Stats.of(times)


def run(runs: int, warmup: int) -> dict[str, Any]:
    _common.setup_django()
    from django.test import Client

    from kvmmgr.access import Actor
    from kvmmgr.api import tokens

    page_client = _common.logged_in_client()
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username="bench")
    key = tokens.create(Actor.system("admin"), user, "bench").key
    api = Client(HTTP_HOST="localhost")
    auth = {"HTTP_AUTHORIZATION": f"Token {key}"}
    results: dict[str, Any] = {}
    _common.seed_inventory(1, 0, prefix="empty")
    results["api, no VMs"] = _time(api, "/api/v1/vms/", runs, warmup, **auth)
    _common.clear_inventory()
    _common.seed_inventory(10, 100)
    results["api, 1,000 VMs (page of 100)"] = _time(api, "/api/v1/vms/", runs, warmup, **auth)
    results["api, 1,000 VMs, ?node=bench003&state=running"] = _time(
        api, "/api/v1/vms/?node=bench003&state=running", runs, warmup, **auth
    )
    results["VM list page (HTML), 1,000 VMs"] = _time(page_client, "/", max(20, runs // 10), 3)
    return {
        "machine": _common.machine(),
        "goal_ms": GOAL_MS,
        "results": {label: vars(stats) for label, stats in results.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    payload = run(args.runs, args.warmup)
    for label, stats in payload["results"].items():
        print(
            f"{label:>48}: median {stats['median_ms']:.1f} ms, p95 {stats['p95_ms']:.1f} ms "
            f"(n={stats['n']})"
        )
    _common.write_json(args.json, payload)
    api_ms = payload["results"]["api, 1,000 VMs (page of 100)"]["median_ms"]
    print(f"goal: median < {GOAL_MS:.0f} ms -> {'met' if api_ms < GOAL_MS else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
