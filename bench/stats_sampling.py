"""One stats sampling cycle for a test-driver node with 1,000 domains, DB write included.

libvirt's test driver answers ``getAllDomainStats`` with the state group only, so
the cycle is timed in two parts that add up to what a real node costs:

1. the real bulk call through the adapter (``node_stats``) on the test driver;
2. parsing 667 crafted records shaped like a real node's (cpu, 2 vCPUs, balloon,
   2 disks, 1 NIC: ~60 keys each, as libvirt 9 returns for a running qemu guest)
   with ``parse_domain_record`` and storing them with ``record_snapshot`` (rates
   from the previous cycle's counters, one bulk insert, cursor update).

    .venv/bin/python -m bench.stats_sampling [--domains 1000] [--runs 7]

Goal: < 1 s per cycle.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from bench import _common

GOAL_S = 1.0


def real_record(index: int, cycle: int) -> dict[str, Any]:
    """A running guest's getAllDomainStats record, its counters advancing per cycle."""
    tick = cycle * 5
    raw: dict[str, Any] = {
        "state.state": 1,
        "state.reason": 1,
        "cpu.time": (index + 1) * 10**9 + tick * 3 * 10**8,
        "cpu.user": 10**9,
        "cpu.system": 10**9,
        "cpu.haltpoll.success.time": 0,
        "cpu.haltpoll.fail.time": 0,
        "balloon.current": 1048576,
        "balloon.maximum": 1048576,
        "balloon.swap_in": 0,
        "balloon.swap_out": 0,
        "balloon.major_fault": 100,
        "balloon.minor_fault": 1000,
        "balloon.unused": 400000,
        "balloon.available": 1000000,
        "balloon.usable": 500000 - index,
        "balloon.last-update": 1700000000 + tick,
        "balloon.disk_caches": 100000,
        "balloon.hugetlb_pgalloc": 0,
        "balloon.hugetlb_pgfail": 0,
        "balloon.rss": 300000,
        "vcpu.current": 2,
        "vcpu.maximum": 2,
        "block.count": 2,
        "net.count": 1,
        "net.0.name": f"vnet{index}",
    }
    for vcpu in range(2):
        raw[f"vcpu.{vcpu}.state"] = 1
        raw[f"vcpu.{vcpu}.time"] = 10**9 + tick * 10**8
        raw[f"vcpu.{vcpu}.wait"] = 0
        raw[f"vcpu.{vcpu}.delay"] = 0
    for disk in range(2):
        for key, value in {
            "name": f"vd{'ab'[disk]}",
            "path": f"/var/lib/libvirt/images/vm{index}-{disk}.qcow2",
            "backingIndex": 1,
            "rd.reqs": 100 + tick * 10,
            "rd.bytes": 4096 * (100 + tick * 10),
            "rd.times": 10**6,
            "wr.reqs": 50 + tick * 5,
            "wr.bytes": 4096 * (50 + tick * 5),
            "wr.times": 10**6,
            "fl.reqs": 10,
            "fl.times": 10**5,
            "allocation": 10**9,
            "capacity": 10**10,
            "physical": 10**9,
        }.items():
            raw[f"block.{disk}.{key}"] = value
    for key in ("rx", "tx"):
        raw[f"net.0.{key}.bytes"] = 10**6 + tick * 12345
        raw[f"net.0.{key}.pkts"] = 1000 + tick * 10
        raw[f"net.0.{key}.errs"] = 0
        raw[f"net.0.{key}.drop"] = 0
    return raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", help="write results as JSON here")
    args = parser.parse_args()

    data_dir = _common.setup_django()
    try:
        run(args, data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def run(args: argparse.Namespace, data_dir: Path) -> None:
    from nodes.hypervisor import NodeCounters, close_all, node_stats
    from nodes.hypervisor.stats import parse_domain_record
    from nodes.models import Node
    from stats.models import VmSample
    from stats.services.sampling import record_snapshot
    from tests.support.nodexml import make_domains, write_node_xml
    from vms.services.inventory import refresh_node

    xml = write_node_xml(data_dir / "node.xml", make_domains(args.domains))
    node = Node.objects.create(name="bench", uri=f"test://{xml}")
    refresh_node(node)

    call_s: list[float] = []
    parse_s: list[float] = []
    write_s: list[float] = []
    samples = 0
    base = time.time() - 3600
    for cycle in range(args.runs + 1):
        started = time.perf_counter()
        snapshot = node_stats(node.uri)
        call_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        domains = [
            parse_domain_record(d.uuid, d.name, real_record(i, cycle))
            for i, d in enumerate(snapshot.domains)
        ]
        crafted = NodeCounters(taken_at=base + cycle * 5, host=snapshot.host, domains=domains)
        parse_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        result = record_snapshot(node, crafted)
        write_s.append(time.perf_counter() - started)
        samples = result.samples
    close_all()
    # The first cycle has no previous counters (no rates) and a cold connection.
    med = {
        k: statistics.median(v[1:])
        for k, v in (("call", call_s), ("parse", parse_s), ("write", write_s))
    }
    total = [c + p + w for c, p, w in zip(call_s, parse_s, write_s, strict=True)]
    steady = statistics.median(total[1:])
    rates = VmSample.objects.exclude(cpu_pct=None).count()
    print(_common.machine())
    print(f"domains {args.domains}, running (sampled) {samples}, runs {args.runs} (+1 first)")
    print(f"first cycle (cold connection, no rates): {_common.fmt_ms(total[0] * 1000)}")
    print(
        f"steady cycle median: {_common.fmt_ms(steady * 1000)} = libvirt call "
        f"{_common.fmt_ms(med['call'] * 1000)} + parse {_common.fmt_ms(med['parse'] * 1000)} "
        f"+ DB write {_common.fmt_ms(med['write'] * 1000)}; "
        f"max {_common.fmt_ms(max(total[1:]) * 1000)}"
    )
    print(
        f"samples with a CPU rate: {rates}; "
        f"goal < {GOAL_S:g} s: {'pass' if steady < GOAL_S else 'FAIL'}"
    )
    _common.write_json(
        args.json,
        {"first_s": total[0], "steady_s": steady, "parts_s": med, "samples": samples},
    )


if __name__ == "__main__":
    main()
