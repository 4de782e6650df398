"""Children of a job die with its worker, and a timeout kills their whole group."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nodes.hypervisor.bound import run_bound

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _wait(predicate, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_a_child_dies_when_the_worker_that_started_it_is_killed() -> None:
    """virt-install outlived a SIGKILLed worker and made a VM."""
    script = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); "
        "from nodes.hypervisor.bound import run_bound; run_bound(['sleep', '60'], timeout=120)"
    )
    worker = subprocess.Popen([sys.executable, "-c", script])
    try:
        assert _wait(lambda: bool(_children(worker.pid)), 10), "the child never started"
        (child,) = _children(worker.pid)
        worker.kill()  # SIGKILL: no cleanup code of the worker runs
        worker.wait(10)
        assert _wait(lambda: not _alive(child), 5), f"child {child} outlived its worker"
    finally:
        if worker.poll() is None:
            worker.kill()


def test_a_timeout_kills_the_childs_own_children_too(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = f"sleep 60 & echo $! > {pidfile}; wait"
    with pytest.raises(subprocess.TimeoutExpired):
        run_bound(["bash", "-c", script], timeout=1.0)
    grandchild = int(pidfile.read_text())
    assert _wait(lambda: not _alive(grandchild), 5), "the timeout left a grandchild running"


def test_output_and_status_come_back_as_with_subprocess_run() -> None:
    done = run_bound(["bash", "-c", "echo out; echo err >&2; exit 3"], timeout=10,
                     env={**os.environ, "X": "1"})  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
