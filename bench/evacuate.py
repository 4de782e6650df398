"""Evacuating a node of N guests through the tunnel: the product's evacuation with
``--parallel 1`` and ``--parallel 2`` against a sequential loop of raw ``virsh migrate``.

    .venv/bin/python -m bench.evacuate [--guests 3] [--json PATH]

Needs root and the lab (the NAT topology of ``tests/lab/nat.py``: vpn1 public, nat2
behind its router; the product's tunnel between them). N idle TCG guests (128 MiB,
64 MiB disk) start on vpn1; each arm moves all of them to nat2 and the benchmark
(untimed) moves them back with raw virsh before the next arm. The arms alternate
order over two rounds. "Product" is ``request_evacuation`` + the parent job with its
child migration jobs run as a worker runs them (each job by ``runner.execute`` in its
own thread, the database as the only channel); "raw" is the loop an admin would type:
per guest ``vol-create-as`` on the destination then ``virsh migrate --live --p2p
--copy-storage-all --persistent --undefinesource`` over the tunnel. Reported: total
wall time of each arm and its worst downtime (libvirt's own figure for each move).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import _common
from bench.migration import raw_migration, setup
from bench.vpn_overlay import nat_lab


def _executor(stop: threading.Event) -> None:
    """Run every queued job as soon as it appears, each in its own thread (a worker)."""
    from django.db import connection

    from jobs.choices import JobStatus
    from jobs.models import Job

    started: set[int] = set()
    try:
        while not stop.is_set():
            for pk in Job.objects.filter(status=JobStatus.QUEUED).values_list("pk", flat=True):
                if pk not in started:
                    started.add(pk)
                    threading.Thread(target=_run_job, args=(pk,), daemon=True).start()
            time.sleep(0.1)
    finally:
        connection.close()


def _run_job(pk: int) -> None:
    from django.db import connection

    from jobs import runner

    try:
        runner.execute(pk)
    finally:
        connection.close()


def product(server: Any, client: Any, parallel: int) -> dict[str, Any]:
    """One evacuation; ``parallel`` also into the one destination (--per-destination)."""
    from jobs.choices import JobStatus
    from jobs.models import Job
    from kvmmgr.access import Actor
    from vms.services.evacuation import request_evacuation

    t0 = time.perf_counter()
    _, job = request_evacuation(
        server, Actor.system("bench"), to=[client.name], parallel=parallel,
        per_destination=parallel,
    )  # fmt: skip
    assert job is not None
    while True:
        job.refresh_from_db()
        if job.status in JobStatus.terminal():
            break
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    downtimes = [c.progress_detail.get("downtime_ms") for c in Job.objects.filter(parent=job)]
    from nodes.services import registry

    registry.set_maintenance(server, Actor.system("bench"), False)
    return {
        "ok": job.status == JobStatus.SUCCEEDED, "wall_s": round(wall, 1),
        "worst_downtime_ms": max((d for d in downtimes if d is not None), default=None),
        "error": job.error[-300:],
    }  # fmt: skip


def raw_loop(guests: list[tuple[str, str]], server: Any, client: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    runs = [raw_migration(uuid, name, server, client) for name, uuid in guests]
    return {
        "ok": all(r.ok for r in runs), "wall_s": round(time.perf_counter() - t0, 1),
        "worst_downtime_ms": max((r.downtime_ms for r in runs if r.downtime_ms), default=None),
        "error": "; ".join(r.error for r in runs if not r.ok)[-300:],
    }  # fmt: skip


def run(count: int) -> dict[str, Any]:
    with nat_lab() as (lab, vpn1, nat2):
        data_dir = setup(lab.key_path)
        from nodes.models import Node
        from tests.lab import nat
        from tests.lab.trust import confirm_host_key
        from vms.services import inventory
        from vpn import services

        server = Node.objects.create(name=vpn1.name, uri=vpn1.uri, virt_type="qemu")
        client = Node.objects.create(name=nat2.name, uri=nat2.uri, virt_type="qemu")
        server, client = confirm_host_key(server, vpn1), confirm_host_key(client, nat2)
        tunnel = services.create_tunnel(name="t1", subnet=nat.TUNNEL_NET, server=server)
        services.add_client(tunnel, client)
        stop = threading.Event()
        worker = threading.Thread(target=_executor, args=(stop,), daemon=True)
        worker.start()
        results: dict[str, list[dict[str, Any]]] = {}
        guests: list[tuple[str, str]] = []
        try:
            services.up(client)
            server.refresh_from_db()
            client.refresh_from_db()
            for index in range(count):
                info, _ = lab.boot_guest(vpn1, f"evb{index}", timeout=120, disk_mib=64)
                guests.append((f"evb{index}", str(info.uuid)))
            arms = [
                "product --parallel 1",
                "product --parallel 2 --per-destination 2",
                "raw virsh loop",
            ]
            for round_ in range(2):
                for arm in arms if round_ == 0 else list(reversed(arms)):
                    for node in (server, client):
                        inventory.refresh_node(node)
                        node.refresh_from_db()
                    if arm.startswith("product"):
                        outcome = product(server, client, int(arm.split()[2]))
                    else:
                        outcome = raw_loop(guests, server, client)
                    results.setdefault(arm, []).append(outcome)
                    print(f"{arm:22s} {outcome}", flush=True)
                    for node in (server, client):
                        inventory.refresh_node(node)
                    for name, uuid in guests:  # back to vpn1, untimed
                        if nat2.virsh("domstate", name).stdout.strip() == "running":
                            back = raw_migration(uuid, name, client, server)
                            if not back.ok:
                                raise RuntimeError(f"moving {name} back failed: {back.error}")
        finally:
            stop.set()
            for name, _ in guests:
                lab.remove_guest(name, vpn1, nat2)
            services.stop(client)
            services.stop(server)
            import shutil

            shutil.rmtree(data_dir, ignore_errors=True)
    return {"machine": _common.machine(), "guests": count, "results": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guests", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    payload = run(args.guests)
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
