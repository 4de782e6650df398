"""Small helpers shared by the lab modules.

Every external program is run with an argument list (never through a shell) so
that node names and paths can never be interpreted as shell syntax, and every
call is bounded by a timeout because a hung helper would otherwise hang a whole
test session.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

log = logging.getLogger("kvmmgr.lab")

#: Root of all persistent lab state (node dirs, SSH keys, the state file).
STATE_ROOT = Path(os.environ.get("KVMMGR_LAB_STATE", "/var/lib/kvmmgr-lab"))

#: Repository root, needed to run ``python -m tests.lab._node_init`` from
#: inside the namespaces regardless of the caller's working directory.
REPO_ROOT = Path(__file__).resolve().parents[2]


class LabError(RuntimeError):
    """Raised when the lab cannot be built; carries the failing command output."""


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    timeout: float = 60.0,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command (argument list only) and capture its text output.

    ``check`` raises :class:`LabError` with stderr included, because the bare
    ``CalledProcessError`` message hides the reason a lab step failed.
    """
    argv = [os.fspath(a) for a in args]
    log.debug("run: %s", argv)
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise LabError(
            f"command failed ({proc.returncode}): {argv}\n"
            f"stdout: {proc.stdout.strip()}\nstderr: {proc.stderr.strip()}"
        )
    return proc


def wait_for(
    predicate: Callable[[], bool], timeout: float, interval: float = 0.2, what: str = "condition"
) -> None:
    """Poll ``predicate`` until true; raise :class:`LabError` after ``timeout`` seconds.

    Used instead of fixed sleeps so fast machines are not slowed down and slow
    ones fail with a message naming what never happened.
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def read_pid(pidfile: Path) -> int | None:
    """Return the PID stored in ``pidfile`` if that process still exists."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def netns_pids(netns: str) -> list[int]:
    """PIDs of processes living in network namespace ``netns``.

    Everything the lab starts lives in one of its own network namespaces, so
    this list is exactly "processes we started" and is safe to terminate even
    after a crash left no pidfiles behind.
    """
    proc = run(["ip", "netns", "pids", netns], check=False, timeout=10)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def terminate_pids(pids: Iterable[int], grace: float = 5.0) -> None:
    """SIGTERM the given PIDs, then SIGKILL whatever survives ``grace`` seconds."""
    pending = {p for p in pids if p > 1 and p != os.getpid()}
    for pid in pending:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pending and time.monotonic() < deadline:
        pending = {p for p in pending if pid_alive(p)}
        if pending:
            time.sleep(0.1)
    for pid in pending:
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while pending and time.monotonic() < deadline:
        pending = {p for p in pending if pid_alive(p)}
        if pending:
            time.sleep(0.1)


def _signal(pid: int, sig: signal.Signals) -> None:
    """Send a signal, ignoring processes that already exited."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def list_netns() -> list[str]:
    """Names of the network namespaces known to ``ip netns``."""
    proc = run(["ip", "netns", "list"], check=False, timeout=10)
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


def link_exists(name: str) -> bool:
    """True if a network interface ``name`` exists in the root namespace."""
    return Path("/sys/class/net", name).exists()
