"""Many browser consoles at once through the console proxy, on the lab's NAT'd node.

    .venv/bin/python -m bench.console_load [--consoles 20] [--seconds 60] [--json PATH]

Needs root and the lab (see ``tests/lab``); holds the lab lock like the other lab
benchmarks. Topology: ``nat2`` behind its router, reached by the manager only
through the port forward, two tiny TCG guests on it with VNC on nat2's loopback.
The proxy runs as in production (``manage.py consoleproxy``, its own process), so
every console is one ssh ``direct-tcpip`` channel through the port forward.

Each client is what noVNC does when nobody types: the websocket handshake with a
one-time ticket, the RFB handshake (security "none", shared), then an incremental
framebuffer update request every 200 ms, reading whatever comes. The proxy's CPU
time and resident memory come from /proc. Phases, in one run: the proxy idle
(baseline), one console for the same duration, then N consoles at once.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import _common

ORIGIN = "http://bench.invalid"
GUESTS = ("cl-a", "cl-b")
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Phase:
    name: str
    consoles: int
    seconds: float
    cpu_percent: float  # of one core, averaged over the phase
    rss_mib_end: float
    bytes_from_vm: int = 0
    failures: list[str] = field(default_factory=list)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _rss_mib(pid: int) -> float:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * PAGE / 2**20


class Client(threading.Thread):
    """One idle noVNC: handshake, then incremental update requests every 200 ms."""

    def __init__(self, url: str, cookie: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.cookie, self.stop = url, cookie, stop
        self.received = 0
        self.error = ""
        self.ready = threading.Event()

    def run(self) -> None:
        import websocket

        try:
            ws = websocket.create_connection(
                self.url, cookie=self.cookie, origin=ORIGIN, subprotocols=["binary"], timeout=20
            )
        except Exception as exc:
            self.error = f"connect: {exc}"
            self.ready.set()
            return
        buffer = bytearray()

        def need(count: int) -> bytes:
            while len(buffer) < count:
                frame = ws.recv()
                buffer.extend(frame if isinstance(frame, bytes) else frame.encode())
            data = bytes(buffer[:count])
            del buffer[:count]
            return data

        try:
            need(12)  # "RFB 003.008\n"
            ws.send_binary(b"RFB 003.008\n")
            count = need(1)[0]
            types = need(count)
            if 1 not in types:
                raise RuntimeError(f"security types {list(types)} lack 'none'")
            ws.send_binary(b"\x01")
            if struct.unpack(">I", need(4))[0] != 0:
                raise RuntimeError("security result not ok")
            ws.send_binary(b"\x01")  # ClientInit: shared
            width, height = struct.unpack(">HH", need(4))
            need(16)  # pixel format
            need(struct.unpack(">I", need(4))[0])  # desktop name
            request = struct.pack(">BBHHHH", 3, 1, 0, 0, width, height)
            ws.send_binary(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
            self.ready.set()
            ws.settimeout(0.2)
            while not self.stop.is_set():
                try:
                    frame = ws.recv()
                    self.received += len(frame)
                except websocket.WebSocketTimeoutException:
                    ws.send_binary(request)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ready.set()
            ws.close()


def _phase(name: str, pid: int, clients: list[Client], seconds: float) -> Phase:
    stop = threading.Event()
    for client in clients:
        client.stop = stop
        client.start()
    for client in clients:
        client.ready.wait(30)
    cpu0, t0 = _cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = _cpu_seconds(pid), time.monotonic()
    rss = _rss_mib(pid)
    stop.set()
    for client in clients:
        client.join(10)
    return Phase(
        name=name,
        consoles=len(clients),
        seconds=round(t1 - t0, 1),
        cpu_percent=round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
        rss_mib_end=round(rss, 1),
        bytes_from_vm=sum(c.received for c in clients),
        failures=[c.error for c in clients if c.error],
    )


def run(consoles: int, seconds: float) -> dict[str, Any]:
    from bench.migration import lab_session
    from tests.lab import nat

    with lab_session() as lab:
        nat2 = nat.add_nat_node(lab, "nat2")
        for guest in GUESTS:
            lab.boot_guest(nat2, guest, timeout=120, disk_mib=64)
        data_dir = _common.setup_django()
        os.environ["KVMMGR_SSH_KEY"] = str(lab.key_path)
        from django.conf import settings
        from django.contrib.auth.models import User
        from django.contrib.sessions.backends.db import SessionStore

        settings.KVMMGR_SSH_KEY = lab.key_path
        from kvmmgr.access import Actor
        from kvmmgr.users import add_user
        from nodes.models import Node
        from vms.models import VirtualMachine
        from vms.services import console_tickets, inventory

        node = Node.objects.create(name="nat2", uri=nat2.uri, virt_type="qemu")
        assert inventory.refresh_node(node).ok
        add_user(Actor.system("bench"), "bench", "operator", "bench-Password-1")
        user = User.objects.get(username="bench")
        port = _free_port()
        env = {
            **os.environ,
            "KVMMGR_DATA_DIR": str(data_dir),
            "DATABASE_URL": f"sqlite:///{data_dir / 'db.sqlite3'}",
            "KVMMGR_CONSOLE_ORIGINS": ORIGIN,
        }
        proxy = subprocess.Popen(
            [sys.executable, "manage.py", "consoleproxy", "--port", str(port)],
            cwd=_common.REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_port(port)
            vms = [VirtualMachine.objects.get(name=name) for name in GUESTS]

            def clients(count: int) -> list[Client]:
                made = []
                for index in range(count):
                    session = SessionStore()
                    session["_auth_user_id"] = str(user.pk)
                    session.create()
                    vm = vms[index % len(vms)]
                    actor = Actor.for_user(user, source="127.0.0.1")
                    ticket = console_tickets.issue(vm, actor, user, session.session_key)
                    url = f"ws://127.0.0.1:{port}/websockify?token={ticket.token}"
                    made.append(Client(url, f"sessionid={session.session_key}", threading.Event()))
                return made

            phases = [
                _phase("proxy idle", proxy.pid, [], seconds),
                _phase("1 console", proxy.pid, clients(1), seconds),
                _phase(f"{consoles} consoles", proxy.pid, clients(consoles), seconds),
                _phase("proxy idle after", proxy.pid, [], min(seconds, 10)),
            ]
        finally:
            proxy.terminate()
            proxy.wait(10)
            for guest in GUESTS:
                lab.remove_guest(guest, nat2)
    return {
        "machine": _common.machine(),
        "phases": [asdict(p) for p in phases],
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("the console proxy did not start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--consoles", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = run(args.consoles, args.seconds)
    for phase in result["phases"]:
        print(
            f"{phase['name']:>18}: CPU {phase['cpu_percent']:5.1f} % of a core, "
            f"RSS {phase['rss_mib_end']:6.1f} MiB, {phase['bytes_from_vm'] / 2**20:7.1f} MiB "
            f"from the VMs in {phase['seconds']} s, failures: {phase['failures'] or 'none'}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
