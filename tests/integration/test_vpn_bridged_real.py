"""Bridged (TAP) OpenVPN between a public node and a node behind NAT, through the product.

Topology: tests/lab/nat.py. The tunnel is a bridged overlay on 198.19.0.0/24:
OpenVPN runs the product's ``kvmmgr-bridge`` script, which joins the TAP device
to each node's VM bridge ``labbr0`` (created if missing), lowers the MTU of both
and puts the node's tunnel address on the bridge. A guest with a static address
on that segment is live-migrated (copy-storage, over the tunnel) from the NATed
node to the public one and back while a TCP connection to it, held open from
the public node's namespace, keeps exchanging numbered lines; after each arrival the
guest must go on printing (tests/lab/liveness.py: why a frozen TCG guest is retried).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodes.models import Node
from tests.integration.test_migration_real import _link_mtu
from tests.integration.test_vpn_real import (  # noqa: F401
    _can_connect,
    _migrate_leg,
    _node,
    vpn_dir,
)
from tests.lab import nat
from tests.lab.fixtures import LabGuests
from tests.lab.lab import Lab
from tests.lab.liveness import (
    GuestStalled,
    retry_if_guest_stalled,
    serial_log,
)
from tests.lab.node import LabNode
from vms.models import VirtualMachine
from vms.services import inventory
from vpn import services
from vpn.choices import TunnelMode

BRIDGE = "labbr0"
OVERLAY = "198.19.0.0/24"
GUEST_IP = "198.19.0.50"
ECHO_PORT = 7
MTU = 1400

# Runs inside a node's network namespace: one line every 50 ms over a single
# connection, each echoed back by the guest; stops sending when STOP appears, waits
# (up to 30 s) for the echoes still on their way, then reports how many lines came
# back, the longest silence and how long that drain took. A TCG guest on a loaded
# machine echoes slower than 20 lines/s: seen in CI, 127 lines still queued 5 s
# after the stop, with replies flowing all along (longest silence 0.37 s).
CLIENT = r"""
import json, os, select, socket, sys, time
addr, port, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sock = socket.create_connection((addr, port), timeout=10)
sock.setblocking(False)
sent = received = 0
buf = b""
last = time.monotonic()
gap = 0.0
error = ""
print("CONNECTED", flush=True)
first_rx = last_rx = None
stop_at = None
next_send = 0.0
while True:
    now = time.monotonic()
    if stop_at is None and os.path.exists(stop):
        stop_at, stopped = now + 30.0, now
    if stop_at is not None and (now > stop_at or received == sent):
        break
    if stop_at is None and now >= next_send:
        next_send = now + 0.05
        try:
            sock.sendall(b"%08d\n" % sent)
            sent += 1
        except OSError as exc:
            error = repr(exc)
            break
    ready, _, _ = select.select([sock], [], [], 0.05)
    if ready:
        try:
            data = sock.recv(65536)
        except OSError as exc:
            error = repr(exc)
            break
        if not data:
            error = "closed by peer"
            break
        buf += data
        lines = buf.split(b"\n")
        buf = lines.pop()
        received += len(lines)
        now = time.monotonic()
        if lines:
            first_rx = first_rx or time.time()
            last_rx = time.time()
        gap = max(gap, now - last)
        last = now
drain = time.monotonic() - stopped if stop_at is not None else None
print(json.dumps({"sent": sent, "received": received, "max_gap_s": round(gap, 3),
                  "drain_s": drain and round(drain, 2), "error": error,
                  "first_rx": first_rx, "last_rx": last_rx}), flush=True)
"""


@pytest.fixture(scope="session")
def nat_nodes(lab: Lab) -> tuple[LabNode, LabNode]:
    """``vpn1`` on the lab bridge, ``nat2`` behind the masquerading router (shared)."""
    return nat.add_public_node(lab, "vpn1"), nat.add_nat_node(lab, "nat2")


def _master(node: LabNode, device: str) -> str:
    out = subprocess.run(
        ["ip", "-n", node.netns, "-o", "link", "show", device],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout.split()  # fmt: skip
    return out[out.index("master") + 1] if "master" in out else ""


def _udp_errors(node: LabNode) -> dict[str, int]:
    """The namespace's UDP counters that say datagrams were dropped (socket buffers full)."""
    out = subprocess.run(
        ["ip", "netns", "exec", node.netns, "cat", "/proc/net/snmp"],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout  # fmt: skip
    header, values = [line.split()[1:] for line in out.splitlines() if line.startswith("Udp:")]
    counters = dict(zip(header, map(int, values), strict=True))
    return {key: counters.get(key, 0) for key in ("RcvbufErrors", "SndbufErrors", "InErrors")}


def _diagnose(nodes: tuple[LabNode, ...], tunnel: str, guest: str = "") -> str:
    """Links, bridges, sockets, guest and OpenVPN log tails of the nodes, for a failure message."""
    out = []
    for node in nodes:
        if guest:
            state = node.virsh("domstate", "--reason", guest).stdout.strip()
            serial = serial_log(node, guest)
            tail = serial.read_text(errors="replace")[-1500:] if serial.exists() else "(none)"
            out.append(f"--- {node.name}: {guest} {state!r}; serial log tail\n{tail}")
            if node.virsh("domid", guest).returncode == 0:
                out.append(node.guest_report(guest))
        ss = subprocess.run(
            ["ip", "netns", "exec", node.netns, "ss", "-tinoe", "dst", GUEST_IP],
            check=False, capture_output=True, text=True, timeout=10,
        ).stdout  # fmt: skip
        fdb = subprocess.run(
            ["ip", "netns", "exec", node.netns, "bridge", "fdb", "show", "br", BRIDGE],
            check=False, capture_output=True, text=True, timeout=10,
        ).stdout  # fmt: skip
        out.append(f"--- {node.name}: ss to the guest\n{ss}\n--- {node.name}: fdb\n{fdb}")
        for argv in (["-s", "link"], ["-br", "-4", "addr"], ["neigh"]):
            shown = subprocess.run(
                ["ip", "-n", node.netns, *argv],
                check=False, capture_output=True, text=True, timeout=10,
            ).stdout  # fmt: skip
            out.append(f"--- {node.name}: ip {' '.join(argv)}\n{shown}")
        log = node.host_path(f"/run/openvpn/kvmmgr-{tunnel}.log")
        tail = log.read_text(errors="replace")[-6000:] if log.exists() else "(no log)"
        out.append(f"--- {node.name}: openvpn log\n{tail}")
    return "\n".join(out)


@pytest.fixture
def echo_client(tmp_path: Path) -> Iterator[tuple[Path, list[subprocess.Popen[str]]]]:
    """Where stop files go; clients started by the test are killed (by handle) at the end."""
    started: list[subprocess.Popen[str]] = []
    yield tmp_path, started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def _start_client(node: LabNode, stop: Path) -> subprocess.Popen[str]:
    argv = ["ip", "netns", "exec", node.netns, sys.executable, "-c", CLIENT,
            GUEST_IP, str(ECHO_PORT), str(stop)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == "CONNECTED", (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


@pytest.mark.django_db
def test_bridged_tunnel_keeps_guest_tcp_connection_across_migration(
    manager_ssh: Path,
    vpn_dir: Path,  # noqa: F811
    lab: Lab,
    nat_nodes: tuple[LabNode, LabNode],
    echo_client: tuple[Path, list[subprocess.Popen[str]]],
    lab_guests: LabGuests,
) -> None:
    vpn1, nat2 = nat_nodes
    server, client = _node(vpn1), _node(nat2)
    tunnel = services.create_tunnel(
        name="b1", subnet=OVERLAY, server=server, mode=TunnelMode.BRIDGED,
        bridge=BRIDGE, mtu=MTU, port=1195,
    )  # fmt: skip
    services.add_client(tunnel, client)
    try:
        lines = services.up(client)
        assert any("connected, tunnel address 198.19.0.2" in line for line in lines), lines
        # The product joined the TAP to the VM bridge on both nodes, with the overlay MTU.
        for node, address in ((vpn1, "198.19.0.1"), (nat2, "198.19.0.2")):
            assert _master(node, tunnel.device) == BRIDGE, node.name
            mtus = (_link_mtu(node, tunnel.device), _link_mtu(node, BRIDGE))
            assert mtus == (MTU, MTU), node.name
            shown = subprocess.run(
                ["ip", "-n", node.netns, "-4", "-o", "addr", "show", "dev", BRIDGE],
                capture_output=True, text=True, timeout=10, check=True,
            ).stdout  # fmt: skip
            assert f"{address}/24" in shown, (node.name, shown)
        # One L2 segment: vpn1 reaches nat2's bridge address through the NAT and the TAP.
        # (no ping on these machines: TCP probes, to nat2's sshd on its bridge address)
        assert _can_connect(vpn1, "198.19.0.2"), _diagnose((vpn1, nat2), tunnel.name)
        server.refresh_from_db()
        client.refresh_from_db()
        assert (server.migration_address, client.migration_address) == ("198.19.0.1", "198.19.0.2")

        # The guest must go on printing after each arrival; a guest that TCG froze is
        # replaced by a fresh one, twice at most (tests/lab/liveness.py).
        def round_trip(attempt: int) -> None:
            name = lab_guests.track(f"vbr{attempt}{int(time.time() * 1000) % 10000}", nat2, vpn1)
            stop = stop_dir / f"stop{attempt}"
            try:
                _round_trip_with_open_connection(lab, vpn1, nat2, name, stop, started, tunnel.name)
            except GuestStalled:
                for proc in started:
                    if proc.poll() is None:
                        proc.kill()
                lab.remove_guest(name, nat2, vpn1)
                raise

        stop_dir, started = echo_client
        retry_if_guest_stalled(round_trip, attempts=3)
    finally:
        services.stop(client)
        services.stop(server)
        Node.objects.filter(pk__in=[server.pk, client.pk]).update(migration_address="")


def _round_trip_with_open_connection(
    lab: Lab,
    vpn1: LabNode,
    nat2: LabNode,
    name: str,
    stop: Path,
    started: list[subprocess.Popen[str]],
    tunnel: str,
) -> None:
    """Boot ``name`` on nat2's overlay bridge, hold a connection to it from vpn1, and
    migrate it to vpn1 and back through the product: no line may be lost."""
    server, client = Node.objects.get(name=vpn1.name), Node.objects.get(name=nat2.name)
    guest, _ = lab.boot_guest(
        nat2, name, timeout=90, disk_mib=64, bridge=BRIDGE,
        cmdline_extra=f"ip={GUEST_IP}/24 echo={ECHO_PORT}",
    )  # fmt: skip
    assert _can_connect(vpn1, GUEST_IP, ECHO_PORT), _diagnose((vpn1, nat2), tunnel)
    udp_before = {node.name: _udp_errors(node) for node in (vpn1, nat2)}
    proc = _start_client(vpn1, stop)
    started.append(proc)
    time.sleep(2)
    assert inventory.refresh_node(client).ok and inventory.refresh_node(server).ok
    vm = VirtualMachine.objects.get(uuid=guest.uuid)
    timeline = {"client_started": time.time()}
    job, there = _migrate_leg(
        vm, server, vpn1, nat2, "198.19.0.1", why=lambda: (udp_before, _udp_errors(vpn1))
    )
    timeline["there_done"] = time.time()
    time.sleep(3)
    timeline["back_start"] = time.time()
    back, back_s = _migrate_leg(
        vm, client, nat2, vpn1, "198.19.0.2", why=lambda: (udp_before, _udp_errors(nat2))
    )
    timeline["back_done"] = time.time()
    time.sleep(3)
    before_stop = _diagnose((vpn1, nat2), tunnel, name)
    stop.write_text("stop\n")
    out, err = proc.communicate(timeout=60)
    report = json.loads(out.strip().splitlines()[-1])
    lost = report["sent"] - report["received"]
    udp_drops = {
        node.name: {k: v - udp_before[node.name][k] for k, v in _udp_errors(node).items()}
        for node in (vpn1, nat2)
    }
    print(
        f"VPN-BRIDGED there={there:.1f}s back={back_s:.1f}s "
        f"downtime_ms={job.progress_detail.get('downtime_ms')}/"
        f"{back.progress_detail.get('downtime_ms')} sent={report['sent']} "
        f"lost={lost} max_gap={report['max_gap_s']}s drain={report['drain_s']}s "
        f"error={report['error']!r} udp_drops={udp_drops}"
    )
    # TCP retransmits what the migration's pause dropped: nothing is lost for good.
    assert report["error"] == "", (report, err)
    if lost:
        print(before_stop)
    timeline.update({k: report[k] for k in ("first_rx", "last_rx") if report.get(k)})
    timeline = {k: round(v - timeline["client_started"], 2) for k, v in timeline.items()}
    assert report["sent"] > 200 and lost == 0, (report, timeline)
