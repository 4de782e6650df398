"""WAN conditions on the NAT router's outside link: rate, loss and delay.

The NAT lab (``tests/lab/nat.py``) joins the sites through the router namespace
``kvmlab-router`` (outside ``eth0`` 198.51.100.254, inside bridge ``lan0``).
Everything between a node behind the router and the rest of the world crosses
it, so a profile applied there shapes the tunnel's underlay in both directions:

* **rate**: ``tbf`` on the router's egress both ways (``eth0`` = upload,
  ``lan0`` = download);
* **loss**: ``iptables -t mangle … -m statistic --mode random --probability P
  -j DROP`` on both egresses (own chain ``KVMLAB-WAN``);
* **delay**: this kernel has no ``sch_netem``. The tunnel's underlay is one UDP
  flow, so a relay (:mod:`tests.lab.udp_delay`, run in the router namespace by
  PID) holds each of its datagrams ``delay_ms`` each way; a DNAT rule (chain
  ``KVMLAB-WAN-DNAT``) steers the client's datagrams for the VPN server to it.
  Only that UDP flow is delayed; the manager's ssh through the router is not.

A DNAT decision is taken on a flow's first packet: apply the profile (with the
relay) **before** the tunnel comes up, and remove it after the tunnel is down;
the conntrack entry of a running tunnel keeps the path it had.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.lab._util import REPO_ROOT, STATE_ROOT, LabError, read_pid, run, terminate_pids
from tests.lab.nat import INSIDE_BRIDGE, ROUTER_INSIDE, ROUTER_NETNS

OUTSIDE_DEV = "eth0"
LOSS_CHAIN = "KVMLAB-WAN"
DNAT_CHAIN = "KVMLAB-WAN-DNAT"
RELAY_PORT = 40000
RELAY_PIDFILE = STATE_ROOT / "wan-relay.pid"
RELAY_LOG = STATE_ROOT / "wan-relay.log"
#: The relay exits by itself after this long, whatever happens to its caller.
RELAY_MAX_SECONDS = 3600


@dataclass(frozen=True)
class Profile:
    """One emulated WAN link; ``delay_ms`` and ``loss_pct`` apply each way."""

    name: str
    rate_mbit: int
    delay_ms: int = 0
    loss_pct: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.rate_mbit <= 10_000:
            raise ValueError("rate_mbit must be between 1 and 10000")
        if not 0 <= self.delay_ms <= 1000:
            raise ValueError("delay_ms must be between 0 and 1000")
        if not 0 <= self.loss_pct < 100:
            raise ValueError("loss_pct must be between 0 and 100")

    def describe(self) -> str:
        parts = [f"{self.rate_mbit} Mbit/s"]
        if self.delay_ms:
            parts.append(f"{self.delay_ms} ms each way (tunnel only)")
        if self.loss_pct:
            parts.append(f"{self.loss_pct:g} % loss each way")
        return ", ".join(parts)


PROFILES: dict[str, Profile] = {
    "wan100": Profile("wan100", 100, delay_ms=20, loss_pct=0.1),
    "wan20": Profile("wan20", 20, delay_ms=20, loss_pct=0.1),
    "rate100": Profile("rate100", 100),
    "rate20": Profile("rate20", 20),
}


def tbf_argv(dev: str, rate_mbit: int) -> list[str]:
    """``tc`` arguments for a token bucket of ``rate_mbit`` on ``dev``'s egress.

    Burst: 5 ms of the rate (at least 32 KiB, what one timer tick needs at these
    rates); queue: 50 ms of the rate, like a modest access router, so the rate
    limit does not add a second of bufferbloat on top of the emulated delay.
    """
    bytes_per_s = rate_mbit * 1_000_000 // 8
    burst = max(32 * 1024, bytes_per_s * 5 // 1000)
    limit = max(2 * burst, bytes_per_s * 50 // 1000)
    return [
        "tc", "qdisc", "replace", "dev", dev, "root", "tbf",
        "rate", f"{rate_mbit}mbit", "burst", str(burst), "limit", str(limit),
    ]  # fmt: skip


def loss_rule(dev: str, loss_pct: float) -> list[str]:
    """An iptables rule (chain ``KVMLAB-WAN``) dropping ``loss_pct`` % of ``dev``'s egress."""
    return [
        "-o", dev, "-m", "statistic", "--mode", "random",
        "--probability", f"{loss_pct / 100:.6f}", "-j", "DROP",
    ]  # fmt: skip


def relay_dnat_rule(server: str, port: int, relay_port: int = RELAY_PORT) -> list[str]:
    """Steer clients' UDP for ``server:port`` to the relay on the router's inside address."""
    return [
        "-i", INSIDE_BRIDGE, "-p", "udp", "-d", server, "--dport", str(port),
        "-j", "DNAT", "--to-destination", f"{ROUTER_INSIDE}:{relay_port}",
    ]  # fmt: skip


def relay_argv(server: str, port: int, delay_ms: int, relay_port: int = RELAY_PORT) -> list[str]:
    """The relay's command line (run inside the router namespace)."""
    return [
        sys.executable, "-m", "tests.lab.udp_delay",
        "--listen", f"{ROUTER_INSIDE}:{relay_port}", "--upstream", f"{server}:{port}",
        "--delay-ms", str(delay_ms), "--max-seconds", str(RELAY_MAX_SECONDS),
    ]  # fmt: skip


def _ns(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["ip", "netns", "exec", ROUTER_NETNS, *args], check=check, timeout=15)


def apply(profile: Profile, *, udp_server: tuple[str, int] | None = None) -> None:
    """Shape the router's outside link; with ``udp_server`` and a delay, start the relay.

    ``udp_server`` is the VPN server's (address, UDP port) as clients behind the
    router dial it. Without it (or with ``delay_ms == 0``) nothing is delayed.
    """
    clear()
    for dev in (OUTSIDE_DEV, INSIDE_BRIDGE):
        _ns(*tbf_argv(dev, profile.rate_mbit))
    if profile.loss_pct:
        _ns("iptables", "-t", "mangle", "-N", LOSS_CHAIN)
        _ns("iptables", "-t", "mangle", "-A", "POSTROUTING", "-j", LOSS_CHAIN)
        for dev in (OUTSIDE_DEV, INSIDE_BRIDGE):
            _ns("iptables", "-t", "mangle", "-A", LOSS_CHAIN, *loss_rule(dev, profile.loss_pct))
    if profile.delay_ms and udp_server is not None:
        start_relay(*udp_server, profile.delay_ms)


def start_relay(server: str, port: int, delay_ms: int) -> int:
    """Run the delay relay in the router namespace and steer the flow to it; its PID."""
    RELAY_PIDFILE.parent.mkdir(parents=True, exist_ok=True)
    with RELAY_LOG.open("w") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ROUTER_NETNS, *relay_argv(server, port, delay_ms)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO_ROOT,
        )  # fmt: skip
    RELAY_PIDFILE.write_text(f"{proc.pid}\n")
    # `ip netns exec` execs the program, so the PID is the relay's own.
    for _ in range(50):
        if "RELAY " in RELAY_LOG.read_text(errors="replace"):
            break
        if proc.poll() is not None:
            raise LabError(f"delay relay exited: {RELAY_LOG.read_text(errors='replace')}")
        time.sleep(0.1)
    else:
        terminate_pids([proc.pid])
        raise LabError("delay relay did not start within 5 s")
    _ns("iptables", "-t", "nat", "-N", DNAT_CHAIN)
    _ns("iptables", "-t", "nat", "-I", "PREROUTING", "-j", DNAT_CHAIN)
    _ns("iptables", "-t", "nat", "-A", DNAT_CHAIN, *relay_dnat_rule(server, port))
    return proc.pid


def relay_pid() -> int | None:
    """The running relay's PID (from its pidfile), if any."""
    return read_pid(RELAY_PIDFILE)


def clear() -> None:
    """Remove every shaping rule and stop the relay. Idempotent; safe without a router."""
    if run(["ip", "netns", "pids", ROUTER_NETNS], check=False).returncode != 0:
        RELAY_PIDFILE.unlink(missing_ok=True)
        return
    pid = relay_pid()
    if pid is not None and _in_router(pid):
        terminate_pids([pid])
    RELAY_PIDFILE.unlink(missing_ok=True)
    for dev in (OUTSIDE_DEV, INSIDE_BRIDGE):
        _ns("tc", "qdisc", "del", "dev", dev, "root", check=False)
    for table, chain, parent in (
        ("mangle", LOSS_CHAIN, "POSTROUTING"),
        ("nat", DNAT_CHAIN, "PREROUTING"),
    ):
        while _ns("iptables", "-t", table, "-D", parent, "-j", chain, check=False).returncode == 0:
            pass
        _ns("iptables", "-t", table, "-F", chain, check=False)
        _ns("iptables", "-t", table, "-X", chain, check=False)


def _in_router(pid: int) -> bool:
    """A recycled PID must not be killed: the relay lives in the router's netns."""
    try:
        return (
            Path(f"/proc/{pid}/ns/net").stat().st_ino
            == Path(f"/run/netns/{ROUTER_NETNS}").stat().st_ino
        )
    except OSError:
        return False


def tc_stats() -> dict[str, dict[str, int]]:
    """Bytes/packets sent and dropped by each shaped egress (``tc -s``); {} when unshaped."""
    out: dict[str, dict[str, int]] = {}
    for dev in (OUTSIDE_DEV, INSIDE_BRIDGE):
        proc = _ns("tc", "-s", "-j", "qdisc", "show", "dev", dev, check=False)
        try:
            qdiscs = json.loads(proc.stdout or "[]")
        except ValueError:
            continue
        for q in qdiscs:
            if q.get("root") and q.get("kind") == "tbf":
                out[dev] = {k: int(q.get(k, 0)) for k in ("bytes", "packets", "drops")}
    return out


# --- measuring a path (functional checks and benchmarks) --------------------------

_TCP_PEER = r"""
import json, socket, sys, time
role, address = sys.argv[1], sys.argv[2]
port, nbytes, sends = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
if role == "listen":
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((address, port))
    srv.listen(1)
    srv.settimeout(30)
    print("LISTENING", flush=True)
    conn, _ = srv.accept()
else:
    conn = socket.create_connection((address, port), timeout=30)
conn.settimeout(120)
if sends:
    chunk = bytes(range(256)) * 256
    left = nbytes
    while left > 0:
        left -= conn.send(chunk[: min(left, len(chunk))])
    conn.shutdown(socket.SHUT_WR)
    conn.recv(1)
else:
    total, first = 0, None
    while True:
        data = conn.recv(1 << 16)
        if not data:
            break
        if first is None:
            first = time.perf_counter()
        total += len(data)
    end = time.perf_counter()
    print(json.dumps({"bytes": total, "seconds": end - (first or end)}), flush=True)
conn.close()
"""

_UDP_ECHO = r"""
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", int(sys.argv[1])))
sock.settimeout(30)
print("LISTENING", flush=True)
for _ in range(int(sys.argv[2])):
    data, addr = sock.recvfrom(2048)
    sock.sendto(data, addr)
"""

_UDP_PING = r"""
import json, socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(5)
rtts = []
for i in range(int(sys.argv[3])):
    started = time.perf_counter()
    sock.sendto(str(i).encode(), (sys.argv[1], int(sys.argv[2])))
    sock.recvfrom(2048)
    rtts.append(time.perf_counter() - started)
print(json.dumps(rtts), flush=True)
"""


def _in_ns(netns: str, program: str, *args: object) -> list[str]:
    return ["ip", "netns", "exec", netns, sys.executable, "-c", program, *map(str, args)]


def _listener(argv: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "LISTENING":
        proc.kill()
        raise LabError(f"listener did not start: {proc.communicate(timeout=5)[1][-500:]}")
    return proc


def tcp_rate(
    listen_ns: str, connect_ns: str, address: str, nbytes: int, *, listener_sends: bool,
    port: int = 5301,
) -> float:  # fmt: skip
    """Bytes/s of one TCP stream between two namespaces (timed by the receiver).

    The connecting side dials ``address`` (the listener's, as seen from
    ``connect_ns``); ``listener_sends`` picks the direction, so a node behind
    NAT can be the receiver of a download too.
    """
    flag = "1" if listener_sends else "0"
    other = "0" if listener_sends else "1"
    server = _listener(_in_ns(listen_ns, _TCP_PEER, "listen", "0.0.0.0", port, nbytes, flag))
    try:
        client = run(
            _in_ns(connect_ns, _TCP_PEER, "connect", address, port, nbytes, other), timeout=150
        )
        out, err = server.communicate(timeout=150)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(5)
    lines = (client.stdout if listener_sends else out).strip().splitlines()
    if not lines:
        raise LabError(f"no measurement: {err[-500:]}")
    result = json.loads(lines[-1])
    if result["bytes"] != nbytes:
        raise LabError(f"received {result['bytes']} of {nbytes} bytes")
    return result["bytes"] / result["seconds"]


def udp_rtts(
    server_ns: str, client_ns: str, address: str, port: int, count: int = 5
) -> list[float]:
    """Round-trip times (s) of ``count`` datagrams from ``client_ns`` to an echo server."""
    echo = _listener(_in_ns(server_ns, _UDP_ECHO, port, count))
    try:
        out = run(_in_ns(client_ns, _UDP_PING, address, port, count), timeout=60).stdout
    finally:
        if echo.poll() is None:
            echo.kill()
        echo.wait(5)
    return [float(x) for x in json.loads(out.strip().splitlines()[-1])]
