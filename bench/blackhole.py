"""A blackholed node: refresh time to "offline", page time with it, others undisturbed.

100 nodes × 10 VMs (ORM rows on test:/// nodes); one node is a real test-driver
node (``tests/support/nodexml.py``, 10 domains) used to time an ordinary refresh, and one
node's URI is ``qemu+ssh://root@198.51.100.250/system``, an address where every
packet is dropped. Figures:

* how long ``refresh_node`` takes to give up on the blackholed node and whether it
  is then marked offline (``last_error`` set, ``status_label == "offline"``);
* the VM list page with vs without the blackholed node (ratio, same run);
* ``refresh_node`` of the test-driver node before, during (concurrently, in another
  thread, as a second Celery worker slot would) and after the blackholed refresh.

The blackhole comes from the lab (``python -m tests.lab up``: netns
``kvmlab-blackhole`` behind bridge ``kvmlab0``). Without the lab, this script makes
its own for the run (netns ``kvmbench-bh``, veth 198.51.100.254 <-> .250, INPUT DROP)
and removes it afterwards; it refuses to run if 198.51.100.250 would be routed
through the default gateway. Needs root for that case.

    .venv/bin/python -m bench.blackhole [--runs 30] [--warmup 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import _common

BLACKHOLE = "198.51.100.250"
BLACKHOLE_URI = f"qemu+ssh://root@{BLACKHOLE}/system"
LAB_NETNS = "kvmlab-blackhole"
LAB_BRIDGE = "kvmlab0"
SAFETY_PREFIX = "198.51.100.0/24"
SAFETY_METRIC = "4000000000"
OWN_NETNS = "kvmbench-bh"
OWN_ROOT_IF = "kvmbh0"
OWN_NS_IF = "kvmbh1"
OWN_ROOT_ADDR = "198.51.100.254/24"
OWN_NS_ADDR = f"{BLACKHOLE}/24"
# Refresh must give up within about the connect timeout (3 s by default).
OFFLINE_GOAL_S = 3.5
# Pause between test-driver refreshes while the blackholed one runs (a busy worker).
PACE_S = 0.05


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _route_to_blackhole() -> dict[str, Any]:
    out = _ip("-j", "route", "get", BLACKHOLE, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        return {}
    routes = json.loads(out.stdout)
    return routes[0] if routes else {}


def _netns_exists(name: str) -> bool:
    out = _ip("netns", "list", check=False)
    return any(line.split()[0] == name for line in out.stdout.splitlines() if line.strip())


def _remove_own() -> None:
    _ip("link", "del", OWN_ROOT_IF, check=False)
    if _netns_exists(OWN_NETNS):
        _ip("netns", "del", OWN_NETNS, check=False)


def _route_is_safe() -> str:
    """The device 198.51.100.250 is routed to, if that is a known blackhole; else ''.

    Safe means a connected route (no gateway) to the lab's bridge with the lab's
    blackhole namespace present, or to this script's own veth.
    """
    route = _route_to_blackhole()
    if not route or "gateway" in route or route.get("type", "unicast") != "unicast":
        return ""
    dev = str(route.get("dev", ""))
    if dev == LAB_BRIDGE and _netns_exists(LAB_NETNS):
        return dev
    if dev == OWN_ROOT_IF and _netns_exists(OWN_NETNS):
        return dev
    return ""


@contextmanager
def _safety_net() -> Iterator[None]:
    """An ``unreachable`` route for 198.51.100.0/24 with the worst metric, for the run.

    It is used only when no connected route to the prefix exists (say the lab is
    torn down mid-run): then a connect fails at once with "no route to host" instead
    of going out through the default gateway.
    """
    _ip("route", "replace", "unreachable", SAFETY_PREFIX, "metric", SAFETY_METRIC)
    try:
        yield
    finally:
        _ip("route", "del", "unreachable", SAFETY_PREFIX, "metric", SAFETY_METRIC, check=False)


@contextmanager
def blackhole() -> Iterator[str]:
    """Yield a description of where the blackhole comes from; clean up what we made."""
    with _safety_net():
        dev = _route_is_safe()
        if dev == LAB_BRIDGE:
            yield f"tests.lab (netns {LAB_NETNS}, via {dev})"
            return
        route = _route_to_blackhole()
        if route and "gateway" not in route and route.get("type", "unicast") == "unicast":
            raise SystemExit(
                f"{BLACKHOLE} is on a connected route via {route.get('dev')} that is not a "
                "known blackhole; refusing to guess what answers there."
            )
        _remove_own()  # leftovers of an interrupted run of this script
        try:
            _ip("netns", "add", OWN_NETNS)
            _ip("link", "add", OWN_ROOT_IF, "type", "veth", "peer", "name", OWN_NS_IF)
            _ip("link", "set", OWN_NS_IF, "netns", OWN_NETNS)
            _ip("addr", "add", OWN_ROOT_ADDR, "dev", OWN_ROOT_IF)
            _ip("link", "set", OWN_ROOT_IF, "up")
            _ip("-n", OWN_NETNS, "addr", "add", OWN_NS_ADDR, "dev", OWN_NS_IF)
            _ip("-n", OWN_NETNS, "link", "set", OWN_NS_IF, "up")
            _ip("-n", OWN_NETNS, "link", "set", "lo", "up")
            subprocess.run(
                ["ip", "netns", "exec", OWN_NETNS, "iptables", "-A", "INPUT", "-j", "DROP"],
                check=True,
                capture_output=True,
                text=True,
            )
            if _route_is_safe() != OWN_ROOT_IF:
                raise SystemExit(f"{BLACKHOLE} is not routed to {OWN_ROOT_IF}")
            yield f"own netns {OWN_NETNS} (veth {OWN_ROOT_IF}, INPUT DROP)"
        finally:
            _remove_own()


def _refresh_blackholed(target: Any) -> dict[str, Any]:
    """Refresh the blackholed node; the figure is valid only if the route held throughout."""
    from vms.services.inventory import refresh_node

    before = _route_is_safe()
    if not before:
        raise SystemExit(f"{BLACKHOLE} is no longer routed to a blackhole; stopping.")
    started = time.perf_counter()
    result = refresh_node(target)
    seconds = time.perf_counter() - started
    after = _route_is_safe()
    return {
        "seconds": seconds,
        "ok": result.ok,
        "error": result.error,
        # Timed out at the blackhole (not refused, not unroutable) with the route intact.
        "valid": before == after and "no answer within" in result.error,
    }


def _time_refreshes(node: Any, count: int) -> list[float]:
    from vms.services.inventory import refresh_node

    times = []
    for _ in range(count):
        started = time.perf_counter()
        result = refresh_node(node)
        times.append(time.perf_counter() - started)
        if not result.ok:
            raise RuntimeError(f"test-driver refresh failed: {result.error}")
        # Same pacing in every phase: back-to-back runs are faster (warm caches).
        time.sleep(PACE_S)
    return times


def _summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "median_ms": statistics.median(ms), "max_ms": max(ms)}


def _page_ab(
    client: Any, target: Any, *, runs: int, warmup: int
) -> tuple[_common.PageResult, _common.PageResult]:
    """Time the page with the node as refreshed (offline) and as it was (online), interleaved.

    The two states alternate request by request (the node row is switched between
    requests, untimed) so that load from other processes hits both sides alike.
    """
    from nodes.models import Node

    offline_state = {
        "uri": target.uri,
        "last_error": target.last_error,
        "last_attempt_at": target.last_attempt_at,
        "last_seen": target.last_seen,
    }
    online_state = {**offline_state, "uri": "test:///nonexistent/online.xml", "last_error": ""}
    samples: dict[str, list[_common.PageResult]] = {"online": [], "offline": []}
    _common.time_page(client, "warm-up", nodes=100, vms=1000, runs=1, warmup=warmup)
    for _ in range(runs):
        for key, state in (("online", online_state), ("offline", offline_state)):
            Node.objects.filter(pk=target.pk).update(**state)
            samples[key].append(
                _common.time_page(client, key, nodes=100, vms=1000, runs=1, warmup=0)
            )
    Node.objects.filter(pk=target.pk).update(**offline_state)

    def merge(label: str, parts: list[_common.PageResult]) -> _common.PageResult:
        seconds = [p.stats.median_ms / 1000 for p in parts]
        return _common.PageResult(
            label, 100, 1000, _common.Stats.of(seconds), parts[-1].queries, parts[-1].bytes
        )

    return (
        merge("100 × 10, all online", samples["online"]),
        merge("100 × 10, one blackholed (offline)", samples["offline"]),
    )


def run(runs: int, warmup: int, refreshes: int) -> dict[str, Any]:
    data_dir = _common.setup_django()
    try:
        from django.conf import settings
        from django.db import connection

        from nodes.hypervisor import close_all
        from tests.support.nodexml import make_domains, write_node_xml
        from vms.services.inventory import refresh_node

        _common.ensure_row_template()
        client = _common.logged_in_client()
        nodes = _common.seed_inventory(100, 10)
        # One real test-driver node (replaces its 10 seeded rows with 10 observed ones).
        probe = nodes[0]
        xml = write_node_xml(Path(data_dir) / "probe.xml", make_domains(10, seed="probe"))
        probe.uri = f"test://{xml.resolve()}"
        probe.save(update_fields=["uri"])
        refresh_node(probe)  # first refresh: opens the connection, inserts
        target = nodes[-1]

        before = _time_refreshes(probe, refreshes)

        with blackhole() as source:
            target.uri = BLACKHOLE_URI
            target.save(update_fields=["uri"])
            # 1. The blackholed refresh alone: time to give up and mark the node offline.
            offline = _refresh_blackholed(target)
            target.refresh_from_db()
            offline |= {
                "last_error": target.last_error,
                "status_label": target.status_label,
                "goal_s": OFFLINE_GOAL_S,
            }
            # 2. Again, while this thread keeps refreshing the test-driver node every
            #    PACE_S, as another worker slot would: is the ordinary refresh delayed?
            outcome: dict[str, Any] = {}

            def refresh_blackholed() -> None:
                try:
                    outcome.update(_refresh_blackholed(target))
                finally:
                    connection.close()  # this thread's own DB connection

            thread = threading.Thread(target=refresh_blackholed, name="bench-blackhole")
            thread.start()
            during: list[float] = []
            while thread.is_alive():
                during += _time_refreshes(probe, 1)
            thread.join()
            target.refresh_from_db()
        after = _time_refreshes(probe, refreshes)
        page_without, page_with = _page_ab(client, target, runs=runs, warmup=warmup)
        close_all()
        return {
            "machine": _common.machine(),
            "blackhole_source": source,
            "runs": runs,
            "warmup": warmup,
            "offline": offline,
            "connect_timeout_s": settings.KVMMGR_CONNECT_TIMEOUT,
            "offline_concurrent": outcome,
            "page_without": page_without.as_dict(),
            "page_with": page_with.as_dict(),
            "page_ratio": page_with.stats.median_ms / page_without.stats.median_ms,
            "probe_refresh": {
                "before": _summary(before),
                "during": _summary(during),
                "after": _summary(after),
            },
            "workarounds": list(_common.WORKAROUNDS),
        }
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def report(p: dict[str, Any]) -> str:
    off = p["offline"]
    marked = bool(off["last_error"]) and off["status_label"] == "offline"
    verdict = "pass" if marked and off["seconds"] < off["goal_s"] else "FAIL"
    conc = p["offline_concurrent"]
    if not (off["valid"] and conc["valid"]):
        verdict = "INVALID (route to the blackhole changed or the error was not a timeout)"
    lines = [
        f"Blackholed node {BLACKHOLE_URI} (blackhole: {p['blackhole_source']})",
        f"- refresh_node gave up after {off['seconds']:.2f} s; status_label="
        f"{off['status_label']!r}; last_error={off['last_error']!r} -> {verdict} "
        f"(goal: offline within ~3 s; KVMMGR_CONNECT_TIMEOUT={p['connect_timeout_s']:g} s)",
        f"- same refresh while the test-driver node was refreshed every {PACE_S * 1000:.0f} ms "
        f"in another thread: {conc['seconds']:.2f} s ({conc['error']})",
        "",
        f"| VM list page ({p['runs']} requests each, interleaved) | median | p95 | SQL/request "
        "| page size |",
        "|---|---:|---:|---:|---:|",
    ]
    for page in (p["page_without"], p["page_with"]):
        s = page["stats"]
        lines.append(
            f"| {page['label']} | {_common.fmt_ms(s['median_ms'])} | "
            f"{_common.fmt_ms(s['p95_ms'])} | {page['queries']} | {page['bytes'] / 1024:.0f} KiB |"
        )
    lines += [
        f"ratio with/without blackholed node (median): {p['page_ratio']:.2f}×",
        "",
        "| test-driver node refresh_node | runs | median | max |",
        "|---|---:|---:|---:|",
    ]
    for key, label in (
        ("before", "before"),
        ("during", "during the blackholed refresh (other thread)"),
        ("after", "after"),
    ):
        r = p["probe_refresh"][key]
        lines.append(
            f"| {label} | {r['n']} | {_common.fmt_ms(r['median_ms'])} | "
            f"{_common.fmt_ms(r['max_ms'])} |"
        )
    lines += [f"NOTE: {w}" for w in p.get("workarounds", [])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--refreshes", type=int, default=30, help="probe refreshes before/after")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    payload = run(args.runs, args.warmup, args.refreshes)
    print(report(payload))
    _common.write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
