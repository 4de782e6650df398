"""The cost of the OpenVPN overlay: throughput and live migration, tunnel vs direct path.

    .venv/bin/python -m bench.vpn_overlay [--rounds 2] [--mib 256] [--json PATH]

Needs root and the lab's prerequisites (see ``tests/lab``). It takes the lab's
session lock (as ``tests/lab/fixtures.py`` does), builds the NAT lab of
``tests/lab/nat.py`` (``vpn1`` on the lab bridge, ``nat2`` behind a
masquerading router) and brings up a routed tunnel ``t1`` (100.64.0.0/24,
server ``vpn1``) through the product (``vpn.services.up``), then measures in
the same run:

1. **Throughput**: a plain Python TCP sender in nat2's namespace streams
   ``--mib`` MiB to a receiver in vpn1's namespace (``ip netns exec``), once
   to vpn1's real address (through the NAT router only) and once to its tunnel
   address (OpenVPN, UDP, AES-256-GCM, over the same path). The receiver times
   first byte to EOF. Repeated ``--rounds`` times, interleaved.
2. **Live migration** of the same tiny guest (128 MiB RAM, 256 MiB qcow2 disk,
   dirtying ~4 MiB/s) from nat2 to vpn1 with copy-storage, through the
   product's job, once with vpn1's migration address set to its real address
   (direct) and once to its tunnel address; after each run the guest goes back
   to nat2 over the tunnel (the only way in, nat2 is behind NAT). The job's wall
   time and libvirt's downtime (``downtime_ms``) are reported.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import _common
from bench.migration import LAB_LOCK, actor, setup

PORT = 5299
MIB = 1024 * 1024

RECEIVER = r"""
import json, socket, sys, time
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1])))
srv.listen(1)
print("LISTENING", flush=True)
srv.settimeout(60)
conn, _ = srv.accept()
total = 0
first = None
while True:
    data = conn.recv(1 << 20)
    if not data:
        break
    if first is None:
        first = time.perf_counter()
    total += len(data)
end = time.perf_counter()
print(json.dumps({"bytes": total, "seconds": end - (first or end)}), flush=True)
"""

SENDER = r"""
import socket, sys
addr, port, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
# Zeros, or the MiB pieces of a data file, sent round-robin.
data = open(sys.argv[4], "rb").read() if len(sys.argv) > 4 else b"\0" * (1 << 20)
chunks = [data[i : i + (1 << 20)] for i in range(0, len(data) - (1 << 20) + 1, 1 << 20)]
sock = socket.create_connection((addr, port), timeout=30)
for i in range(mib):
    sock.sendall(chunks[i % len(chunks)])
sock.shutdown(socket.SHUT_WR)
sock.recv(1)
sock.close()
"""


@contextmanager
def nat_lab() -> Iterator[tuple[Any, Any, Any]]:
    """Hold the lab lock; a lab with vpn1 and nat2 (tests/lab/nat.py), torn down afterwards."""
    from tests.lab import nat
    from tests.lab.lab import Lab

    LAB_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LAB_LOCK.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for the lab lock {LAB_LOCK} (another session uses the lab)...")
            fcntl.flock(lock, fcntl.LOCK_EX)
        lab = Lab()
        try:
            lab.setup()
            yield lab, nat.add_public_node(lab, "vpn1"), nat.add_nat_node(lab, "nat2")
        finally:
            lab.teardown()


def throughput(
    receiver_ns: str, sender_ns: str, address: str, mib: int, data: Path | None = None
) -> float:
    """MiB/s of one TCP stream from ``sender_ns`` to ``address`` (receiver in ``receiver_ns``).

    The stream is zeros, or the MiB pieces of ``data`` over and over.
    """
    recv = subprocess.Popen(
        ["ip", "netns", "exec", receiver_ns, sys.executable, "-c", RECEIVER, str(PORT)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert recv.stdout is not None
        if recv.stdout.readline().strip() != "LISTENING":
            err = recv.stderr.read() if recv.stderr else ""
            raise RuntimeError(f"receiver did not start: {err}")
        subprocess.run(
            ["ip", "netns", "exec", sender_ns, sys.executable, "-c", SENDER,
             address, str(PORT), str(mib), *([str(data)] if data else [])],
            check=True, timeout=600,
        )  # fmt: skip
        out, _ = recv.communicate(timeout=60)
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait(5)
    result = json.loads(out.strip().splitlines()[-1])
    if result["bytes"] != mib * MIB:
        raise RuntimeError(f"received {result['bytes']} bytes, expected {mib * MIB}")
    return result["bytes"] / MIB / result["seconds"]


def migrate(vm: Any, dest: Any) -> tuple[float, Any]:
    from jobs import runner
    from jobs.choices import JobStatus
    from vms.forms.migrate import migration_options
    from vms.services.migration.request import request_migration

    job = request_migration(vm, dest, migration_options({}), actor())
    started = time.monotonic()
    runner.execute(job.pk)
    seconds = time.monotonic() - started
    job.refresh_from_db()
    if job.status != JobStatus.SUCCEEDED:
        raise RuntimeError(f"migration to {dest.name} failed: {job.log}")
    vm.refresh_from_db()
    return seconds, job.progress_detail.get("downtime_ms")


def run(rounds: int, mib: int) -> dict[str, Any]:
    with nat_lab() as (lab, vpn1, nat2):
        data_dir = setup(lab.key_path)
        from nodes.models import Node
        from tests.lab import nat
        from vms.models import VirtualMachine
        from vms.services import inventory
        from vpn import services

        server = Node.objects.create(name=vpn1.name, uri=vpn1.uri, virt_type="qemu")
        client = Node.objects.create(name=nat2.name, uri=nat2.uri, virt_type="qemu")
        if hasattr(Node, "trusted_host_key"):  # revisions with confirmed host keys
            from tests.lab.trust import confirm_host_key

            server = confirm_host_key(server, vpn1)
            client = confirm_host_key(client, nat2)
        tunnel = services.create_tunnel(name="t1", subnet=nat.TUNNEL_NET, server=server)
        services.add_client(tunnel, client)
        services.up(client)
        tunnel_ip = tunnel.server.address
        results: dict[str, Any] = {"throughput_mib_s": {"direct": [], "tunnel": []}}
        try:
            for i in range(rounds):
                order = ["direct", "tunnel"] if i % 2 == 0 else ["tunnel", "direct"]
                for path in order:
                    target = vpn1.address if path == "direct" else tunnel_ip
                    rate = throughput(vpn1.netns, nat2.netns, target, mib)
                    results["throughput_mib_s"][path].append(round(rate, 1))
                    print(f"throughput {path}: {rate:.1f} MiB/s")

            name = f"vbench{int(time.time()) % 100000}"
            guest, _ = lab.boot_guest(nat2, name, timeout=90, disk_mib=256,
                                      cmdline_extra="dirty=4")  # fmt: skip
            for node in (server, client):
                inventory.refresh_node(node)
            vm = VirtualMachine.objects.get(uuid=guest.uuid)
            results["migration"] = {"direct": [], "tunnel": []}
            for i in range(rounds):
                order = ["direct", "tunnel"] if i % 2 == 0 else ["tunnel", "direct"]
                for path in order:
                    address = vpn1.address if path == "direct" else tunnel_ip
                    Node.objects.filter(pk=server.pk).update(
                        migration_address=address, migration_ssh_port=22
                    )
                    server.refresh_from_db()
                    seconds, downtime = migrate(vm, server)
                    results["migration"][path].append(
                        {"seconds": round(seconds, 2), "downtime_ms": downtime}
                    )
                    print(f"migration {path}: {seconds:.2f} s, downtime {downtime} ms")
                    client.refresh_from_db()
                    migrate(vm, client)  # back over the tunnel (nat2 is behind NAT)
            nat2.virsh("destroy", name)
            nat2.virsh("undefine", name, "--remove-all-storage")
        finally:
            services.stop(client)
            services.stop(server)
            shutil.rmtree(data_dir, ignore_errors=True)  # it holds the tunnel's keys
    return results


# --- standalone throughput (no lab, no lab lock) -----------------------------------

STANDALONE_NS = ("kvmovb-srv", "kvmovb-cli")
STANDALONE_IPS = ("198.51.100.13", "198.51.100.12")


def _ns(netns: str, *args: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, *args], check=True, timeout=30)


def _make_namespaces() -> None:
    """Two namespaces joined by one veth pair (the direct link), 198.51.100.0/24."""
    srv_ns, cli_ns = STANDALONE_NS
    subprocess.run(["ip", "netns", "add", srv_ns], check=True, timeout=10)
    subprocess.run(["ip", "netns", "add", cli_ns], check=True, timeout=10)
    subprocess.run(
        ["ip", "link", "add", "eth0", "netns", srv_ns, "type", "veth",
         "peer", "name", "eth0", "netns", cli_ns],
        check=True, timeout=10,
    )  # fmt: skip
    for netns, ip in zip(STANDALONE_NS, STANDALONE_IPS, strict=True):
        subprocess.run(["ip", "-n", netns, "addr", "add", f"{ip}/24", "dev", "eth0"],
                       check=True, timeout=10)  # fmt: skip
        subprocess.run(["ip", "-n", netns, "link", "set", "eth0", "up"], check=True)
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)


_STANDALONE_DIR: list[Path] = []


def standalone_django() -> Path:
    """Django on a throwaway DB (once per process); the VPN PKI under the same temp dir."""
    if not _STANDALONE_DIR:
        data_dir = Path(tempfile.mkdtemp(prefix="kvmmgr-ovb-"))
        os.environ["KVMMGR_VPN_DIR"] = str(data_dir / "pki")
        _common.setup_django(data_dir)
        _STANDALONE_DIR.append(data_dir)
    return _STANDALONE_DIR[0]


def _write_configs(root: Path, node: Any, edit: Callable[[str], str] | None) -> None:
    """The member's files as the product renders them, paths moved under ``root``."""
    from vpn import paths, services
    from vpn.models import TunnelMember

    member = TunnelMember.objects.select_related("tunnel", "node").get(node=node)
    for f in services.node_files(member):
        text = f.content.replace(paths.CONF_DIR, str(root / "etc")).replace(
            paths.RUN_DIR, str(root / "run")
        )
        if edit is not None and f.path.endswith(".conf"):
            text = edit(text)
        target = Path(f.path.replace(paths.CONF_DIR, str(root / "etc")))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(f.mode)
    (root / "run").mkdir(exist_ok=True)


def _wait_tunnel(cli_ns: str, server_ip: str) -> None:
    deadline = time.monotonic() + 30
    probe = ["ip", "netns", "exec", cli_ns, sys.executable, "-c",
             f"import socket; socket.create_connection(({server_ip!r}, 9), 1)"]  # fmt: skip
    while True:
        out = subprocess.run(probe, capture_output=True, text=True, check=False)
        if "refused" in out.stderr:  # the server's stack answered through the tunnel
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"tunnel did not come up: {out.stderr[-300:]}")
        time.sleep(0.5)


@contextmanager
def standalone_tunnel(
    name: str = "t1",
    edit: Callable[[str], str] | None = None,
    shape: Callable[[str, str], None] | None = None,
) -> Iterator[tuple[str, str, str]]:
    """Two private namespaces joined by one veth pair, the product's tunnel between them.

    The OpenVPN configs are the product's (``vpn.services.node_files``: same PKI,
    templates, cipher and MTU), written to a temp dir instead of a node's
    /etc/openvpn (only the file paths in them are rewritten; ``edit`` may change
    a config further, for tuning experiments), and run with ``openvpn --daemon``
    in the namespaces. ``shape(srv_ns, cli_ns)`` may shape the veth first.
    Yields (server netns, client netns, server tunnel address). For when the
    lab is busy: no lab lock, nothing of the lab touched. One ``name`` per tunnel
    in a process (each gets its own PKI).
    """
    data_dir = standalone_django()
    from nodes.models import Node
    from vpn import services

    srv_ns, cli_ns = STANDALONE_NS
    srv_ip, cli_ip = STANDALONE_IPS
    server = Node.objects.create(name=f"srv-{name}", uri=f"qemu+ssh://root@{srv_ip}/system")
    client = Node.objects.create(name=f"cli-{name}", uri=f"qemu+ssh://root@{cli_ip}/system")
    tunnel = services.create_tunnel(name=name, subnet="100.64.0.0/24", server=server)
    services.add_client(tunnel, client)
    pids: list[Path] = []
    root = data_dir / name
    try:
        _make_namespaces()
        if shape is not None:
            shape(srv_ns, cli_ns)
        for netns, node in ((srv_ns, server), (cli_ns, client)):
            _write_configs(root / node.name, node, edit)
            pidfile = root / node.name / "run" / "openvpn.pid"
            pids.append(pidfile)
            etc = root / node.name / "etc"
            _ns(netns, "openvpn", "--daemon", "kvmovb", "--writepid", str(pidfile),
                "--cd", str(etc), "--config", str(etc / f"{name}.conf"))  # fmt: skip
        _wait_tunnel(cli_ns, "100.64.0.1")
        yield srv_ns, cli_ns, "100.64.0.1"
    finally:
        for pidfile in pids:
            text = pidfile.read_text().strip() if pidfile.exists() else ""
            if text.isdigit():
                subprocess.run(["kill", "-TERM", text], check=False)
        time.sleep(1)
        for netns in STANDALONE_NS:
            subprocess.run(["ip", "netns", "del", netns], check=False)
        shutil.rmtree(root, ignore_errors=True)  # it holds the tunnel's keys
        tunnel.delete()  # node URIs are unique: the next tunnel needs the rows gone
        Node.objects.filter(pk__in=[server.pk, client.pk]).delete()


def run_standalone(rounds: int, mib: int) -> dict[str, Any]:
    """Throughput only, in two private namespaces joined by one veth pair."""
    try:
        with standalone_tunnel() as (srv_ns, cli_ns, tunnel_ip):
            return _standalone_rounds(srv_ns, cli_ns, tunnel_ip, rounds, mib)
    finally:
        shutil.rmtree(standalone_django(), ignore_errors=True)


def _standalone_rounds(
    srv_ns: str, cli_ns: str, tunnel_ip: str, rounds: int, mib: int
) -> dict[str, Any]:
    srv_ip = STANDALONE_IPS[0]
    results: dict[str, Any] = {"throughput_mib_s": {"direct": [], "tunnel": []}}
    for i in range(rounds):
        order = ["direct", "tunnel"] if i % 2 == 0 else ["tunnel", "direct"]
        for path in order:
            target = srv_ip if path == "direct" else tunnel_ip
            rate = throughput(srv_ns, cli_ns, target, mib)
            results["throughput_mib_s"][path].append(round(rate, 1))
            print(f"throughput {path}: {rate:.1f} MiB/s")
    return results


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    tp = results["throughput_mib_s"]
    out: dict[str, Any] = {
        "throughput_direct_median": statistics.median(tp["direct"]),
        "throughput_tunnel_median": statistics.median(tp["tunnel"]),
    }
    out["throughput_ratio"] = round(
        out["throughput_tunnel_median"] / out["throughput_direct_median"], 3
    )
    mig = results.get("migration")
    if mig:
        for path in ("direct", "tunnel"):
            out[f"migration_{path}_median_s"] = statistics.median(r["seconds"] for r in mig[path])
            downs = [r["downtime_ms"] for r in mig[path] if r["downtime_ms"] is not None]
            out[f"downtime_{path}_median_ms"] = statistics.median(downs) if downs else None
        out["migration_time_ratio"] = round(
            out["migration_tunnel_median_s"] / out["migration_direct_median_s"], 2
        )
        if out["downtime_direct_median_ms"] and out["downtime_tunnel_median_ms"]:
            out["downtime_ratio"] = round(
                out["downtime_tunnel_median_ms"] / out["downtime_direct_median_ms"], 2
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mib", type=int, default=256, help="MiB per throughput stream")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--standalone", action="store_true",
        help="throughput only, in two private namespaces (no lab, no lab lock)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    runner = run_standalone if args.standalone else run
    results = runner(args.rounds, args.mib)
    report = {
        "started": started,
        "machine": _common.machine(),
        "results": results,
        "summary": summarize(results),
    }
    print(json.dumps(report, indent=2, default=str))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
