"""Child programs that never outlive the worker that started them.

A Celery worker killed mid-job (OOM, SIGKILL, a host reboot of the manager) used to
leave virt-install running: it went on creating a VM that the failed job did not
mention. Children started here get their own process group (a timeout kills
virt-install *and* the ssh it spawned) and the kernel's parent-death signal
(``PR_SET_PDEATHSIG``: SIGKILL when the thread that started them dies).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child, between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def run_bound(
    argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` for a child that dies with us; on timeout its whole group is
    killed and ``TimeoutExpired`` raised, as ``subprocess.run`` does."""
    with subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env) if env is not None else None,
        process_group=0,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, async-signal-safe
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
