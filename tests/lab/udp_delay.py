"""A UDP relay that holds every datagram for a fixed time: WAN delay without netem.

This machine's kernel has no ``sch_netem``, so ``tc`` cannot delay packets. The
OpenVPN tunnel between the lab's sites is one UDP flow, so a relay on the router
that receives it, waits ``--delay-ms`` and sends it on delays everything the
tunnel carries (each way: client to server and back). ``tests/lab/wan.py`` runs
it inside the router's namespace and steers the client's datagrams to it with a
DNAT rule; conntrack rewrites the relay's answers back to the server's address,
so the client notices nothing but the delay.

    python -m tests.lab.udp_delay --listen 198.18.0.1:40000 \
        --upstream 198.51.100.13:1194 --delay-ms 20 [--max-seconds 3600]

Bounded in every way: at most ``--queue`` datagrams wait per direction (more are
dropped, like a router's full queue), at most ``--max-clients`` client flows, and
the process exits after ``--max-seconds`` whatever happens (the lab also kills it
by PID, and every process of the router namespace dies with the lab).
"""

from __future__ import annotations

import argparse
import ipaddress
import selectors
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Address = tuple[str, int]
BUFFER_BYTES = 4 * 1024 * 1024


@dataclass
class DelayLine:
    """A FIFO where every item becomes due ``delay_s`` after it was pushed.

    The delay is the same for every item, so due times only grow and the line
    stays a plain deque: one timer for the head is enough, not one per datagram
    (at 100 Mbit/s that is ~9,000 datagrams a second).
    """

    delay_s: float
    limit: int = 4096
    items: deque[tuple[float, Any]] = field(default_factory=deque)
    dropped: int = 0
    passed: int = 0

    def push(self, now: float, item: Any) -> bool:
        """Queue ``item``; False (and counted as dropped) when the line is full."""
        if len(self.items) >= self.limit:
            self.dropped += 1
            return False
        self.items.append((now + self.delay_s, item))
        return True

    def pop_due(self, now: float) -> list[Any]:
        """Every item whose time has come, oldest first."""
        due = []
        while self.items and self.items[0][0] <= now:
            due.append(self.items.popleft()[1])
        self.passed += len(due)
        return due

    def next_due(self) -> float | None:
        return self.items[0][0] if self.items else None


def parse_address(text: str) -> Address:
    """``HOST:PORT`` (IPv4) to a tuple; raises ``ValueError`` on anything else."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    ipaddress.IPv4Address(host)
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"port out of range in {text!r}")
    return host, number


def _big_buffers(sock: socket.socket) -> None:
    # FORCE variants: root in the router namespace may exceed net.core.*mem_max;
    # small buffers would drop bursts here and blame the "WAN" for it.
    for force, plain in ((33, socket.SO_RCVBUF), (32, socket.SO_SNDBUF)):  # SO_*BUFFORCE
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, BUFFER_BYTES)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, BUFFER_BYTES)


def _udp(bind: Address | None = None, connect: Address | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _big_buffers(sock)
    if bind is not None:
        sock.bind(bind)
    if connect is not None:
        sock.connect(connect)
    sock.setblocking(False)
    return sock


@dataclass
class Relay:
    """Listens for clients; one upstream socket per client flow; both ways delayed.

    A plain ``selectors`` loop rather than asyncio protocols: the per-datagram
    cost decides whether a 100 Mbit/s tunnel (~9,000 datagrams a second plus
    its acks) fits in one Python process, and draining each readable socket in
    a batch halves it.
    """

    listen: Address
    upstream: Address
    delay_s: float
    limit: int = 4096
    max_clients: int = 8
    send_errors: int = 0
    flows: dict[Address, socket.socket] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.to_server = DelayLine(self.delay_s, self.limit)
        self.to_client = DelayLine(self.delay_s, self.limit)
        self.selector = selectors.DefaultSelector()
        self.sock = _udp(bind=self.listen)
        self.selector.register(self.sock, selectors.EVENT_READ, None)

    def _flow(self, client: Address) -> socket.socket | None:
        sock = self.flows.get(client)
        if sock is None and len(self.flows) < self.max_clients:
            sock = self.flows[client] = _udp(connect=self.upstream)
            self.selector.register(sock, selectors.EVENT_READ, client)
        return sock

    def _receive(self, sock: socket.socket, client: Address | None, now: float) -> None:
        for _ in range(512):
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ICMP port unreachable from a server not up yet
                return
            if client is None:  # from a client, to the server
                upstream = self._flow(addr)
                if upstream is not None:
                    self.to_server.push(now, (upstream, data, None))
            else:
                self.to_client.push(now, (self.sock, data, client))

    def _send_due(self, now: float) -> None:
        for line in (self.to_server, self.to_client):
            for sock, data, addr in line.pop_due(now):
                try:
                    if addr is None:
                        sock.send(data)
                    else:
                        sock.sendto(data, addr)
                except OSError:
                    self.send_errors += 1

    def run(self, max_seconds: float, stop: Callable[[], bool]) -> None:
        end = time.monotonic() + max_seconds
        while not stop():
            now = time.monotonic()
            if now >= end:
                return
            dues = [d for d in (self.to_server.next_due(), self.to_client.next_due()) if d]
            timeout = max(0.0, min(dues) - now) if dues else 0.5
            for key, _ in self.selector.select(min(timeout, 0.5)):
                self._receive(key.fileobj, key.data, time.monotonic())  # type: ignore[arg-type]
            self._send_due(time.monotonic())

    def close(self) -> None:
        for sock in [self.sock, *self.flows.values()]:
            self.selector.unregister(sock)
            sock.close()
        self.selector.close()

    def counters(self) -> str:
        return (
            f"to-server passed {self.to_server.passed} dropped {self.to_server.dropped}; "
            f"to-client passed {self.to_client.passed} dropped {self.to_client.dropped}; "
            f"send errors {self.send_errors}"
        )


def serve(
    listen: Address, upstream: Address, delay_ms: float, limit: int, max_clients: int,
    max_seconds: float,
) -> str:  # fmt: skip
    stopped: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stopped.append(signum))
    relay = Relay(listen, upstream, delay_ms / 1000, limit, max_clients)
    where = f"{listen[0]}:{listen[1]} -> {upstream[0]}:{upstream[1]}"
    print(f"RELAY {where} +{delay_ms} ms", flush=True)
    try:
        relay.run(max_seconds, lambda: bool(stopped))
    finally:
        relay.close()
    return relay.counters()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=parse_address, required=True)
    parser.add_argument("--upstream", type=parse_address, required=True)
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--queue", type=int, default=4096, help="datagrams per direction")
    parser.add_argument("--max-clients", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    if not 0 <= args.delay_ms <= 1000:
        parser.error("--delay-ms must be between 0 and 1000")
    counters = serve(
        args.listen, args.upstream, args.delay_ms, args.queue, args.max_clients,
        args.max_seconds,
    )  # fmt: skip
    print(f"RELAY-DONE {counters}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
