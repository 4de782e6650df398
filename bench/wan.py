"""Live migration over an emulated WAN link: the product vs raw ``virsh migrate``, via the tunnel.

    .venv/bin/python -m bench.wan --profile wan100 [--cases idle,dirty] [--rounds 2]
                                  [--raw-timeout 150] [--max-minutes 15] [--json PATH]

Needs root and the lab (``tests/lab``); holds the lab's session lock for the
whole run (``bench.vpn_overlay.nat_lab``). Builds the NAT lab (``vpn1`` outside,
``nat2`` behind the router), shapes the router's outside link with a profile of
``tests/lab/wan.py`` (rate both ways, loss both ways, delay of the tunnel's UDP
flow by the relay) **before** the product brings the routed tunnel ``t1`` up
(``vpn.services.up``), so every migration byte crosses the shaped link inside
OpenVPN. Then, per case, the same guest migrates back and forth with the case's
*arms* alternating (round 1: arms in order, round 2: reversed, …), so each arm
runs in both directions and at the same time of the run:

* ``product``: the whole job (``bench.migration.product_migration``: pre-checks,
  destination volume, migration with the convergence policy, source disk
  removal, inventory refresh), with the arm's options;
* ``raw``: ``virsh migrate --live --p2p --copy-storage-all --persistent
  --undefinesource`` over the same peer path (``bench.migration.raw_migration``,
  ``vol-create-as`` first), aborted with ``domjobabort`` after ``--raw-timeout``.

Per migration: wall time, libvirt's downtime, converged or not, bytes through the
tunnel (rx + tx counters of vpn1's tun device, i.e. the payload the tunnel
carried) and whether the guest went on running on the destination
(``tests.lab.liveness``: its 100 ms counter must continue above the source's
last value within 20 s). A guest that stopped is counted as a *guest crash* (not
a product failure: the migration succeeded), replaced by a fresh one, and the
case goes on.

Cases: ``idle`` (128 MiB RAM, 256 MiB qcow2, counter only), ``dirty`` (192 MiB,
``dirty=32``: rewrites 32 MiB a second, faster than the link drains it, with the
same bytes each time: XBZRLE's best case), ``dirtyfresh`` (the same, but every
rewrite changes every byte: XBZRLE's worst case),
``zstd`` (256 MiB RAM, 256 MiB disk whose first 128 MiB hold a mix of text,
binaries and random bytes, copied into guest RAM at boot with ``fill=96``:
multifd with and without zstd compression).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import _common
from bench.migration import product_migration, raw_migration, setup
from bench.vpn_overlay import nat_lab

MIB = 1024 * 1024


@dataclass(frozen=True)
class Arm:
    label: str
    method: str  # "product" | "raw"
    options: dict[str, Any] = field(default_factory=dict)  # product: migration options
    raw_args: tuple[str, ...] = ()  # raw: extra virsh flags


@dataclass(frozen=True)
class Case:
    name: str
    memory_mib: int
    disk_mib: int
    cmdline: str
    arms: tuple[Arm, ...]
    fill_mib: int = 0  # realistic data written to the disk's start before boot


PARALLEL = ("--parallel", "--parallel-connections", "2")


def cases(raw_timeout: int) -> dict[str, Case]:
    """The cases; the product's dirty arms end at the raw timeout too (same budget)."""
    bounded = {"completion_timeout_s": raw_timeout}
    return {
        "idle": Case(
            "idle", 128, 256, "counter=1",
            (
                Arm("product (default options)", "product"),
                Arm("raw", "raw"),
                Arm("product, no compression", "product", {"compression": "none"}),
                Arm("product, xbzrle", "product", {"compression": "xbzrle"}),
                Arm("product, zstd multifd", "product", {"compression": "zstd"}),
            ),
        ),
        "dirtyfresh": Case(
            "dirtyfresh", 192, 64, "dirty=32 dirtyfresh=1 counter=1",
            (
                Arm("product (default options)", "product", bounded),
                Arm("raw", "raw"),
                Arm("product, no compression", "product", {**bounded, "compression": "none"}),
                Arm("product, xbzrle", "product", {**bounded, "compression": "xbzrle"}),
                Arm("product, zstd multifd", "product", {**bounded, "compression": "zstd"}),
            ),
        ),
        "dirty": Case(
            "dirty", 192, 64, "dirty=32 counter=1",
            (
                Arm("product (default options)", "product", bounded),
                Arm("raw", "raw"),
                Arm("product, no compression", "product", {**bounded, "compression": "none"}),
                Arm("product, max downtime 200", "product", {**bounded, "max_downtime_ms": 200}),
                Arm("product, xbzrle", "product", {**bounded, "compression": "xbzrle"}),
                Arm("product, zstd multifd", "product", {**bounded, "compression": "zstd"}),
                Arm("product, post-copy after 30 s", "product",
                    {"postcopy": True, "timeout_policy": "postcopy",
                     "completion_timeout_s": 30}),
            ),
        ),
        "zstd": Case(
            "zstd", 256, 256, "fill=96 counter=1",
            (
                Arm("raw multifd x2", "raw", raw_args=PARALLEL),
                Arm("raw multifd x2 + zstd", "raw",
                    raw_args=(*PARALLEL, "--compressed", "--comp-methods", "zstd")),
            ),
            fill_mib=128,
        ),
    }  # fmt: skip


@dataclass
class Attempt:
    case: str
    arm: str
    direction: str
    converged: bool
    wall_s: float
    downtime_ms: int | None
    tunnel_mib: float
    data_mib: float | None
    guest_running: bool | None  # None: not checked (the migration did not happen)
    error: str = ""


# --- realistic guest data -------------------------------------------------------------


def realistic_data(path: Path, mib: int, seed: int = 11) -> dict[str, float]:
    """Write ``mib`` MiB mixing text, binaries and random bytes (1 MiB pieces, shuffled).

    About 45 % text (Python sources, docs, /usr/share data files), 30 % shared
    libraries and 25 % random bytes: data a real guest holds, compressible in
    parts and not a constant pattern. Returns the zstd -1 ratio of the result.
    """
    rng = random.Random(seed)
    text = _corpus(["/usr/lib/python3", "/usr/share/perl", "/usr/share/doc"], (".py", ".pm", ""))
    binaries = _corpus(["/usr/lib/x86_64-linux-gnu"], (".so",), contains=".so")
    with path.open("wb") as out:
        for _ in range(mib):
            pick = rng.random()
            if pick < 0.45:
                out.write(_piece(text, rng))
            elif pick < 0.75:
                out.write(_piece(binaries, rng))
            else:
                out.write(rng.randbytes(MIB))
    packed = subprocess.run(
        ["zstd", "-1", "-c", str(path)], capture_output=True, check=True, timeout=120
    ).stdout
    return {"zstd1_ratio": round(path.stat().st_size / len(packed), 2)}


def _corpus(roots: list[str], suffixes: tuple[str, ...], contains: str = "") -> list[Path]:
    files = []
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for name in names:
                p = Path(dirpath, name)
                if name.endswith(".gz") or not p.is_file() or p.is_symlink():
                    continue
                if (contains and contains in name) or (not contains and name.endswith(suffixes)):
                    files.append(p)
    files.sort()
    if not files:
        raise RuntimeError(f"no files for the data mix under {roots}")
    return files


def _piece(files: list[Path], rng: random.Random) -> bytes:
    buf = bytearray()
    while len(buf) < MIB:
        try:
            buf += rng.choice(files).read_bytes()[: MIB - len(buf)]
        except OSError:
            continue
    return bytes(buf)


# --- the lab ---------------------------------------------------------------------------


@contextmanager
def shaped_tunnel(profile_name: str) -> Iterator[dict[str, Any]]:
    """NAT lab, shaped router, product tunnel up over it; everything removed afterwards."""
    from tests.lab import nat, wan

    profile = wan.PROFILES[profile_name]
    with nat_lab() as (lab, vpn1, nat2):
        data_dir = setup(lab.key_path)
        from nodes.models import Node
        from nodes.services import trust
        from vpn import services

        server = Node.objects.create(name=vpn1.name, uri=vpn1.uri, virt_type="qemu")
        client = Node.objects.create(name=nat2.name, uri=nat2.uri, virt_type="qemu")
        tunnel = services.create_tunnel(name="t1", subnet=nat.TUNNEL_NET, server=server)
        services.add_client(tunnel, client)
        # Before the tunnel: the relay's DNAT must catch the flow's first datagram.
        wan.apply(profile, udp_server=(vpn1.address, tunnel.port))
        try:
            services.up(client)
            server.refresh_from_db()
            client.refresh_from_db()
            # Raw virsh relies on the trust the product installs (ssh keys, known_hosts
            # for the tunnel addresses); a raw arm may run before any product job.
            print("trust:", "; ".join(trust.establish([server, client])), flush=True)
            yield {
                "lab": lab, "profile": profile, "tunnel": tunnel,
                "lab_nodes": {"vpn1": vpn1, "nat2": nat2},
                "nodes": {"vpn1": server, "nat2": client},
            }  # fmt: skip
        finally:
            try:
                services.stop(client)
                services.stop(server)
            finally:
                print("router tc:", wan.tc_stats(), flush=True)
                wan.clear()
                shutil.rmtree(data_dir, ignore_errors=True)  # it holds the tunnel's keys


def tun_bytes(lab_node: Any, device: str) -> int:
    """rx + tx bytes of ``device`` in the node's namespace."""
    out = subprocess.run(
        ["ip", "-n", lab_node.netns, "-j", "-s", "link", "show", "dev", device],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout  # fmt: skip
    stats = json.loads(out)[0]["stats64"]
    return int(stats["rx"]["bytes"]) + int(stats["tx"]["bytes"])


def boot(env: dict[str, Any], case: Case, name: str) -> str:
    """A fresh guest of ``case`` on nat2; its UUID (inventory refreshed)."""
    from tests.lab._util import run
    from vms.services import inventory

    lab, nat2 = env["lab"], env["lab_nodes"]["nat2"]
    info = lab.define_guest(nat2, name, disk_mib=case.disk_mib, memory_mib=case.memory_mib,
                            cmdline_extra=case.cmdline)  # fmt: skip
    if case.fill_mib:
        with tempfile.TemporaryDirectory(prefix="kvmmgr-wan-") as tmp:
            raw = Path(tmp) / "disk.raw"
            env["data"] = realistic_data(raw, case.fill_mib)
            with raw.open("r+b") as fh:
                fh.truncate(case.disk_mib * MIB)
            image = nat2.host_path(f"/var/lib/libvirt/images/{name}.qcow2")
            run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(image)],
                timeout=120)  # fmt: skip
            nat2.virsh("pool-refresh", "default")
    vol = nat2.virsh("vol-info", "--pool", "default", f"{name}.qcow2", "--bytes").stdout
    alloc = [line.split()[1] for line in vol.splitlines() if line.startswith("Allocation")]
    env.setdefault("disk_allocation_bytes", {})[case.name] = int(alloc[0]) if alloc else None
    started = time.monotonic()
    lab.start_guest(nat2, name)
    lab.wait_guest_up(nat2, name, 120, serial_log=info.serial_log)
    print(f"  booted {name} on nat2 in {time.monotonic() - started:.1f} s", flush=True)
    time.sleep(3)  # let the workload start
    for node in env["nodes"].values():
        inventory.refresh_node(node)
    return str(info.uuid)


def where(env: dict[str, Any], name: str) -> list[str]:
    return [
        key
        for key, node in env["lab_nodes"].items()
        if node.virsh("domstate", name).stdout.strip() == "running"
    ]


def remove(env: dict[str, Any], name: str) -> None:
    from vms.services import inventory

    env["lab"].remove_guest(name, *env["lab_nodes"].values())
    for node in env["nodes"].values():
        inventory.refresh_node(node)


# --- one migration -----------------------------------------------------------------------


def _wait_online(nodes: dict[str, Any], timeout_s: float = 90) -> None:
    """Refresh both nodes until each answers: the manager's ssh to nat2 crosses the
    same shaped link, and a saturating migration can make one refresh time out."""
    from vms.services import inventory

    deadline = time.monotonic() + timeout_s
    for node in nodes.values():
        while not inventory.refresh_node(node).ok:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.name} did not answer again within {timeout_s:g} s")
            time.sleep(2)
        node.refresh_from_db()


def migrate_once(
    env: dict[str, Any], case: Case, arm: Arm, guest: tuple[str, str], *, here: str,
    raw_timeout: int,
) -> Attempt:  # fmt: skip
    name, uuid = guest
    from tests.lab.liveness import COUNTER, GuestStalled, last_number, wait_serial_progress

    there = "vpn1" if here == "nat2" else "nat2"
    nodes, lab_nodes = env["nodes"], env["lab_nodes"]
    _wait_online(nodes)
    floor = last_number(lab_nodes[here], name, COUNTER)
    device = env["tunnel"].device
    before = tun_bytes(lab_nodes["vpn1"], device)
    if arm.method == "product":
        run = product_migration(uuid, name, nodes[here], nodes[there], dict(arm.options))
    else:
        run = raw_migration(uuid, name, nodes[here], nodes[there], extra=arm.raw_args,
                            timeout=raw_timeout)  # fmt: skip
    carried = tun_bytes(lab_nodes["vpn1"], device) - before
    guest_running: bool | None = None
    error = "" if run.ok else (run.error or run.status)[-300:]
    if run.ok:
        try:
            wait_serial_progress(lab_nodes[there], name, floor, COUNTER, timeout=20)
            guest_running = True
        except GuestStalled as exc:
            guest_running = False
            error = f"GUEST STOPPED after arrival: {str(exc)[:300]}"
    attempt = Attempt(
        case=case.name, arm=arm.label, direction=f"{here}→{there}", converged=run.ok,
        wall_s=round(run.wall_s, 2), downtime_ms=run.downtime_ms,
        tunnel_mib=round(carried / MIB, 1), data_mib=run.data_mib,
        guest_running=guest_running, error=error,
    )  # fmt: skip
    verdict = "ok" if run.ok else "NOT CONVERGED/FAILED"
    print(
        f"    {arm.label:28s} {attempt.direction:10s} {attempt.wall_s:7.1f} s  "
        f"downtime {attempt.downtime_ms} ms  tunnel {attempt.tunnel_mib} MiB  {verdict}"
        f"{'' if guest_running is not False else '  GUEST STOPPED'}"
        f"{'  ' + error[:160] if error and guest_running is not False else ''}",
        flush=True,
    )
    if arm.method == "product" and not run.ok:
        for line in run.log.splitlines()[-6:]:
            print(f"      | {line}", flush=True)
    return attempt


def run_case(
    env: dict[str, Any], case: Case, rounds: int, raw_timeout: int, deadline: float
) -> list[Attempt]:
    print(f"\n[{case.name}] {case.memory_mib} MiB RAM, {case.disk_mib} MiB disk, "
          f"{case.cmdline}", flush=True)  # fmt: skip
    name = f"wan{case.name}"
    uuid = boot(env, case, name)
    here = "nat2"
    attempts: list[Attempt] = []
    try:
        for i in range(rounds):
            arms = case.arms if i % 2 == 0 else tuple(reversed(case.arms))
            for arm in arms:
                if time.monotonic() > deadline:
                    print("    time budget used up: stopping this case", flush=True)
                    return attempts
                attempt = migrate_once(env, case, arm, (name, uuid), here=here,
                                       raw_timeout=raw_timeout)  # fmt: skip
                attempts.append(attempt)
                running = where(env, name)
                if attempt.guest_running is False or len(running) != 1:
                    print(f"    guest runs on {running}: replacing it with a fresh one",
                          flush=True)  # fmt: skip
                    remove(env, name)
                    uuid, here = boot(env, case, name), "nat2"
                else:
                    here = running[0]
    finally:
        remove(env, name)
    return attempts


# --- report ------------------------------------------------------------------------------


def summarize(attempts: list[Attempt]) -> list[dict[str, Any]]:
    rows = []
    for key in dict.fromkeys((a.case, a.arm) for a in attempts):
        mine = [a for a in attempts if (a.case, a.arm) == key]
        done = [a for a in mine if a.converged]
        downs = [a.downtime_ms for a in done if a.downtime_ms is not None]
        rows.append(
            {
                "case": key[0],
                "arm": key[1],
                "runs": len(mine),
                "converged": len(done),
                "wall_median_s": statistics.median(a.wall_s for a in done) if done else None,
                "wall_all_s": [a.wall_s for a in mine],
                "downtime_ms": downs,
                "tunnel_median_mib": statistics.median(a.tunnel_mib for a in mine),
                "guest_stopped": sum(1 for a in done if a.guest_running is False),
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| case | arm | converged | wall (median; all) | ratio | downtime (ms) | "
        "tunnel MiB (median) | guest stopped after arrival |",
        "|---|---|---|---|---:|---|---:|---|",
    ]
    # The baseline of a case: its first raw arm that converged, else its first arm.
    base: dict[str, float] = {}
    for r in sorted(rows, key=lambda r: not r["arm"].startswith("raw")):
        if r["wall_median_s"] and r["case"] not in base:
            base[r["case"]] = r["wall_median_s"]
    for r in rows:
        ratio = (
            f"{r['wall_median_s'] / base[r['case']]:.2f}×"
            if r["wall_median_s"] and r["case"] in base
            else "—"
        )
        median = f"{r['wall_median_s']:.1f} s" if r["wall_median_s"] else "—"
        lines.append(
            f"| {r['case']} | {r['arm']} | {r['converged']}/{r['runs']} | {median}; "
            f"{', '.join(f'{w:.0f}' for w in r['wall_all_s'])} | {ratio} | "
            f"{', '.join(map(str, r['downtime_ms'])) or '—'} | {r['tunnel_median_mib']} | "
            f"{r['guest_stopped']} of {r['converged']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="wan100", help="a profile of tests/lab/wan.py")
    parser.add_argument(
        "--cases", default="idle:2,dirty:1",
        help="comma-separated CASE[:ROUNDS] of idle, dirty, dirtyfresh, zstd "
        "(rounds default: --rounds)",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--arms", default="",
        help="semicolon-separated arm labels to keep (each matches a label's start; CASE/LABEL "
        "for one case only); default: all",
    )  # fmt: skip
    parser.add_argument("--raw-timeout", type=int, default=150, help="s before raw is aborted")
    parser.add_argument("--max-minutes", type=float, default=15, help="no new run after this")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.wan needs root (it builds the namespaced lab)")
        return 2
    known = cases(args.raw_timeout)
    keep = [a.strip() for a in args.arms.split(";") if a.strip()]
    chosen = []
    for item in args.cases.split(","):
        name, _, rounds = item.partition(":")
        case = known[name]
        if keep:
            mine = [k.split("/", 1)[-1] for k in keep if "/" not in k or k.startswith(name + "/")]
            arms = tuple(a for a in case.arms if any(a.label.startswith(k) for k in mine))
            case = replace(case, arms=arms or case.arms)
        chosen.append((case, int(rounds or args.rounds)))
    started = time.monotonic()
    attempts: list[Attempt] = []
    payload: dict[str, Any] = {"profile": args.profile, "raw_timeout_s": args.raw_timeout}
    with shaped_tunnel(args.profile) as env:
        print(f"lab + tunnel up over {env['profile'].describe()} after "
              f"{time.monotonic() - started:.0f} s", flush=True)  # fmt: skip
        deadline = time.monotonic() + args.max_minutes * 60
        try:
            for case, rounds in chosen:
                attempts += run_case(env, case, rounds, args.raw_timeout, deadline)
        finally:
            from nodes.hypervisor import close_all

            close_all()
        payload["profile_text"] = env["profile"].describe()
        payload["data"] = env.get("data")
        payload["disk_allocation_bytes"] = env.get("disk_allocation_bytes")
    payload.update(
        machine=_common.machine(),
        total_s=round(time.monotonic() - started),
        summary=summarize(attempts),
        attempts=[asdict(a) for a in attempts],
    )
    print(f"\n## WAN migration ({payload['machine']['date']}, {args.profile}: "
          f"{payload['profile_text']}; raw aborted after {args.raw_timeout} s)\n")  # fmt: skip
    print(table(payload["summary"]))
    if payload.get("data"):
        print(f"\nguest data mix: {payload['data']}")
    print(f"disk allocation at boot (bytes): {payload['disk_allocation_bytes']}")
    print(f"\ntotal {payload['total_s']} s")
    _common.write_json(str(args.json) if args.json else None, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
