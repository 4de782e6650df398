"""Install OpenVPN files on a node and start, stop and query its daemon, over ssh.

Where systemd runs (``/run/systemd/system`` exists) the daemon is the
``kvmmgr-openvpn@TUNNEL`` unit from ``deploy/openvpn/``; elsewhere (containers,
the test lab) it is ``openvpn --daemon`` with a pidfile, and a PID is only
signalled after ``/proc/PID/cmdline`` shows it runs our config.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from nodes.hypervisor.errors import HypervisorError
from nodes.remote import RemoteNode
from vpn import paths
from vpn.mgmt import MgmtError, Status, read_status
from vpn.render import NodeFile


class VpnError(Exception):
    """A VPN operation failed; ``message`` is meant for an admin."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Backup:
    """What files looked like before an install, so a failed ``up`` can put them back."""

    previous: list[tuple[str, str | None]] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)


def install(remote: RemoteNode, files: list[NodeFile]) -> Backup:
    backup = Backup()
    remote.ensure_dir("/etc/openvpn", 0o755)
    remote.ensure_dir(paths.CONF_DIR, 0o700)
    remote.ensure_dir(paths.RUN_DIR, 0o755)
    for node_file in files:
        parent = node_file.path.rsplit("/", 1)[0]
        if parent != paths.CONF_DIR:
            remote.ensure_dir(parent, 0o755)
        old = remote.read_file(node_file.path)
        backup.previous.append((node_file.path, old))
        if old != node_file.content:
            remote.write_file(node_file.path, node_file.content, node_file.mode)
            backup.changed.add(node_file.path)
    return backup


def restore(remote: RemoteNode, backup: Backup) -> None:
    """Put back every file ``install`` changed (remove the ones it created)."""
    for path, old in reversed(backup.previous):
        if path not in backup.changed:
            continue
        if old is None:
            remote.run(["rm", "-f", "--", path])
        else:
            remote.write_file(path, old, 0o600)


def has_systemd(remote: RemoteNode) -> bool:
    return remote.run(["test", "-d", "/run/systemd/system"]).ok


def running_pid(remote: RemoteNode, tunnel: str) -> int | None:
    """PID of our OpenVPN for ``tunnel`` on the node, verified through /proc."""
    text = remote.read_file(paths.pidfile(tunnel))
    if not text or not text.strip().isdigit():
        return None
    pid = int(text.strip())
    cmdline = remote.run(["cat", f"/proc/{pid}/cmdline"])
    if not cmdline.ok or paths.conf(tunnel) not in cmdline.stdout.replace("\0", " "):
        return None
    return pid


def _log_tail(remote: RemoteNode, tunnel: str) -> str:
    text = remote.read_file(paths.log_file(tunnel)) or ""
    lines = [line for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-4:])


def start(remote: RemoteNode, tunnel: str) -> None:
    if has_systemd(remote):
        unit = (paths.TEMPLATES / "kvmmgr-openvpn@.service").read_text()
        if remote.read_file(paths.SYSTEMD_UNIT) != unit:
            remote.write_file(paths.SYSTEMD_UNIT, unit, 0o644)
            remote.run(["systemctl", "daemon-reload"])
        result = remote.run(["systemctl", "start", f"kvmmgr-openvpn@{tunnel}"], timeout=60)
    else:
        result = remote.run(
            [
                "openvpn",
                "--daemon",
                f"kvmmgr-openvpn-{tunnel}",
                "--writepid",
                paths.pidfile(tunnel),
                "--cd",
                paths.CONF_DIR,
                "--config",
                paths.conf(tunnel),
            ],
            timeout=30,
        )
    if not result.ok:
        reason = (result.stderr or result.stdout).strip() or _log_tail(remote, tunnel)
        raise VpnError(f"{remote.name}: OpenVPN did not start: {reason}")
    deadline = time.monotonic() + 10
    while running_pid(remote, tunnel) is None:
        if time.monotonic() > deadline:
            raise VpnError(f"{remote.name}: OpenVPN exited at once: {_log_tail(remote, tunnel)}")
        time.sleep(0.2)


def stop(remote: RemoteNode, tunnel: str, timeout: float = 10.0) -> bool:
    """Stop the daemon; returns whether one was running."""
    if has_systemd(remote):
        was = remote.run(["systemctl", "is-active", "--quiet", f"kvmmgr-openvpn@{tunnel}"]).ok
        remote.run(["systemctl", "stop", f"kvmmgr-openvpn@{tunnel}"], timeout=60)
        return was
    pid = running_pid(remote, tunnel)
    if pid is None:
        return False
    remote.run(["kill", "-TERM", str(pid)])
    deadline = time.monotonic() + timeout
    while remote.run(["kill", "-0", str(pid)]).ok:
        if time.monotonic() > deadline:
            remote.run(["kill", "-KILL", str(pid)])
            break
        time.sleep(0.2)
    remote.run(["rm", "-f", "--", paths.pidfile(tunnel)])
    return True


def status(remote: RemoteNode, tunnel: str, password: str) -> Status | None:
    """The daemon's status from its management interface; ``None`` when it is not running."""
    if running_pid(remote, tunnel) is None and not has_systemd(remote):
        return None
    try:
        channel = remote.open_tcp("127.0.0.1", paths.MGMT_PORT)
    except HypervisorError:
        return None
    try:
        return read_status(channel, password)
    except MgmtError as exc:
        raise VpnError(f"{remote.name}: {exc}") from exc


def addresses(remote: RemoteNode) -> list[tuple[str, str]]:
    """(interface, address/prefix) of every IPv4 address on the node."""
    result = remote.run(["ip", "-4", "-o", "addr", "show"])
    found = []
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "inet":
            found.append((parts[1], parts[3]))
    return found


#: The UDP socket buffer the configs ask for (``sndbuf``/``rcvbuf`` in deploy/openvpn).
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024


def buffer_warnings(remote: RemoteNode) -> list[str]:
    """Kernel limits that would cap OpenVPN's socket buffers below what the config asks.

    The kernel silently caps ``SO_RCVBUF``/``SO_SNDBUF`` at ``net.core.rmem_max`` /
    ``wmem_max`` (Debian's default is 208 KiB); with small buffers, migration
    bursts are dropped at the UDP socket and TCP inside the tunnel stalls.
    """
    names = ("rmem_max", "wmem_max")
    # One round trip for both limits: ``cat`` prints one value per line, in order.
    result = remote.run(["cat", *(f"/proc/sys/net/core/{name}" for name in names)], timeout=10)
    warnings = []
    for name, raw in zip(names, result.stdout.split(), strict=False):
        try:
            value = int(raw)
        except ValueError:
            continue
        if value < SOCKET_BUFFER_BYTES:
            warnings.append(
                f"{remote.name}: net.core.{name} is {value}, below the {SOCKET_BUFFER_BYTES} "
                f"bytes OpenVPN asks for; raise it (sysctl -w net.core.{name}="
                f"{SOCKET_BUFFER_BYTES}, and in /etc/sysctl.d/) or bulk migration traffic "
                "is dropped at the tunnel's socket"
            )
    return warnings
