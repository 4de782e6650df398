"""OpenVPN's management interface: a small line protocol, spoken over any socket-like object.

The manager reaches a node's interface (127.0.0.1:MGMT_PORT on the node) through
its ssh session, so this module only needs ``send``/``recv``/``close``; unit tests
drive it with a local fake server. Reference: OpenVPN's management-notes.txt.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Protocol

#: ``state`` names OpenVPN reports while it has not (re)established the tunnel.
CONNECTING_STATES = frozenset(
    {
        "CONNECTING",
        "WAIT",
        "AUTH",
        "GET_CONFIG",
        "ASSIGN_IP",
        "ADD_ROUTES",
        "RECONNECTING",
        "RESOLVE",
        "TCP_CONNECT",
        "AUTH_PENDING",
    }
)


class MgmtError(Exception):
    """The interface did not answer as expected (wrong password, closed, timeout)."""


class SocketLike(Protocol):
    def send(self, data: bytes) -> int: ...
    def recv(self, size: int) -> bytes: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Peer:
    name: str
    real_address: str
    tunnel_address: str
    bytes_in: int
    bytes_out: int
    connected_since: dt.datetime | None

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "real_address": self.real_address,
            "tunnel_address": self.tunnel_address,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "connected_since": self.connected_since.isoformat() if self.connected_since else None,
        }


@dataclass
class Status:
    state: str = ""  # OpenVPN's state name, e.g. CONNECTED
    local_address: str = ""
    remote_address: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    peers: list[Peer] = field(default_factory=list)


class Session:
    """One conversation: authenticate, ask, quit."""

    def __init__(self, sock: SocketLike, timeout: float = 5.0) -> None:
        self.sock = sock
        self.timeout = timeout
        self._buffer = b""

    def _read_line(self) -> str:
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._buffer:
            if time.monotonic() > deadline:
                raise MgmtError("the management interface did not answer in time")
            try:
                chunk = self.sock.recv(4096)
            except OSError as exc:  # socket.timeout is an OSError
                raise MgmtError(f"the management interface did not answer ({exc})") from exc
            if not chunk:
                raise MgmtError("the management interface closed the connection")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode(errors="replace").rstrip("\r")

    def login(self, password: str) -> None:
        """Answer the password prompt (OpenVPN sends it without a newline)."""
        deadline = time.monotonic() + self.timeout
        while b"PASSWORD:" not in self._buffer:
            if time.monotonic() > deadline:
                raise MgmtError("no password prompt from the management interface")
            chunk = self.sock.recv(4096)
            if not chunk:
                raise MgmtError("the management interface closed the connection")
            self._buffer += chunk
        self._buffer = self._buffer.split(b"PASSWORD:", 1)[1]
        self.sock.send(password.encode() + b"\n")
        while True:
            line = self._read_line()
            if line.startswith("SUCCESS"):
                return
            if line.startswith("ERROR"):
                raise MgmtError("the management interface refused the password")

    def command(self, text: str) -> list[str]:
        """Send a command and return its lines up to ``END`` (real-time ``>`` lines dropped)."""
        self.sock.send(text.encode() + b"\n")
        lines = []
        while True:
            line = self._read_line()
            if line.startswith(">"):
                continue
            if line == "END":
                return lines
            if line.startswith("ERROR"):
                raise MgmtError(f"{text}: {line}")
            if line.startswith("SUCCESS") and not lines:
                return [line]
            lines.append(line)

    def quit(self) -> None:
        try:
            self.sock.send(b"quit\n")
        except OSError:
            pass
        self.sock.close()


def _split(line: str) -> list[str]:
    return line.split("\t") if "\t" in line else line.split(",")


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


def parse_state(lines: list[str]) -> tuple[str, str, str]:
    """(state, local tunnel address, remote real address) from ``state`` output."""
    for line in reversed(lines):
        parts = line.split(",")
        if len(parts) >= 2 and parts[0].isdigit():
            local = parts[3] if len(parts) > 3 else ""
            remote = parts[4] if len(parts) > 4 else ""
            return parts[1], local, remote
    return "", "", ""


def parse_status(lines: list[str], status: Status) -> Status:
    """Fill peers (server: CLIENT_LIST rows) or byte counters (client) from ``status 3``."""
    headers: dict[str, list[str]] = {}
    for line in lines:
        parts = _split(line)
        if parts[0] == "HEADER" and len(parts) > 2:
            headers[parts[1]] = parts[2:]
        elif parts[0] == "CLIENT_LIST":
            row = dict(zip(headers.get("CLIENT_LIST", []), parts[1:], strict=False))
            since = _int(row.get("Connected Since (time_t)", ""))
            peer = Peer(
                name=row.get("Common Name", ""),
                real_address=row.get("Real Address", ""),
                tunnel_address=row.get("Virtual Address", ""),
                bytes_in=_int(row.get("Bytes Received", "")),
                bytes_out=_int(row.get("Bytes Sent", "")),
                connected_since=dt.datetime.fromtimestamp(since, dt.UTC) if since else None,
            )
            status.peers.append(peer)
            status.bytes_in += peer.bytes_in
            status.bytes_out += peer.bytes_out
        elif parts[0] == "TCP/UDP read bytes" and len(parts) > 1:
            status.bytes_in = _int(parts[1])
        elif parts[0] == "TCP/UDP write bytes" and len(parts) > 1:
            status.bytes_out = _int(parts[1])
    return status


def read_status(sock: SocketLike, password: str, timeout: float = 5.0) -> Status:
    """Log in, read ``state`` and ``status 3``, quit."""
    session = Session(sock, timeout)
    try:
        session.login(password)
        state, local, remote = parse_state(session.command("state"))
        status = Status(state=state, local_address=local, remote_address=remote)
        return parse_status(session.command("status 3"), status)
    finally:
        session.quit()
