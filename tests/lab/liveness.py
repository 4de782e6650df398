"""Is a guest still running its code after a migration? And what to do when it is not.

The lab's guests run under TCG (no usable KVM here). Under TCG, QEMU 7.2 on these
machines now and then resumes a live-migrated guest in a broken state although the
migration itself succeeded: libvirt says "running", qemu answers, but the guest
stops making progress. Seen in the lab stress runs (session of 2026-11-28) over
the OpenVPN overlay: 4 of 35 migrations of a memory-dirtying guest, 1 of 80 of an
idle one, and also with a bare ``virsh migrate --live --p2p --copy-storage-all``
run by hand, without kvmmgr (1 of 7). One guest's serial log held the cause: seconds
after arriving, an Oops (page fault in ``rb_next`` from ``timerqueue_del`` in the APIC timer
interrupt: the hrtimer rbtree held a garbage pointer) and "Kernel panic - not
syncing: Fatal exception in interrupt"; the others were caught in panic's delay
loop, in an rbtree walk whose node points at itself with interrupts off, and idle
with no timer firing again. That is guest memory that changed on the source and
never reached the destination (TCG tracks dirty pages in software; KVM does it in
hardware, and production hosts run KVM).

So lab tests check that a migrated guest goes on printing on the destination
(:func:`wait_serial_progress`) and, when it does not, raise :class:`GuestStalled`
with :meth:`LabNode.guest_report` attached; tests about the product (not about
QEMU) may run their scenario again with a fresh guest (:func:`retry_if_guest_stalled`).
A stall on every attempt still fails the test. Such scenarios use guests that
neither dirty memory nor run the 100 ms counter (its timer is the data the panics
hit): in one CI run a ``dirty=4 counter=1`` guest froze on two attempts in a row.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tests.lab._util import log
from tests.lab.node import LabNode

#: What the guest's ``counter=1`` loop prints every 100 ms.
COUNTER = re.compile(r"KVMMGR-COUNT (\d+)")
#: What every guest prints every 5 s.
ALIVE = re.compile(r"KVMMGR-GUEST-ALIVE (\d+)")

T = TypeVar("T")


class GuestStalled(AssertionError):
    """A guest libvirt calls running stopped printing on the node it migrated to."""


def serial_numbers(path: Path, pattern: re.Pattern[str]) -> list[int]:
    """Every number ``pattern`` finds in a serial log, in order (empty if no log yet)."""
    if not path.exists():
        return []
    return [int(n) for n in pattern.findall(path.read_text(errors="replace"))]


def serial_log(node: LabNode, name: str) -> Path:
    """Where ``name``'s serial output goes on ``node`` (each node writes its own file)."""
    return node.host_path(f"/var/log/libvirt/qemu/{name}-serial.log")


def last_number(node: LabNode, name: str, pattern: re.Pattern[str] = COUNTER) -> int:
    """The latest number ``pattern`` finds in ``name``'s serial log on ``node`` (0: none)."""
    return max(serial_numbers(serial_log(node, name), pattern), default=0)


def wait_serial_progress(
    node: LabNode,
    name: str,
    floor: int,
    pattern: re.Pattern[str] = COUNTER,
    timeout: float = 20.0,
) -> int:
    """Wait until ``name`` prints a number above ``floor`` on ``node``; return it.

    Raises :class:`GuestStalled` (with the guest's state, registers, code and qemu
    threads) when it does not within ``timeout`` seconds.
    """
    path = serial_log(node, name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        above = [n for n in serial_numbers(path, pattern) if n > floor]
        if above:
            return above[0]
        time.sleep(0.25)
    tail = path.read_text(errors="replace")[-600:] if path.exists() else "(no serial log)"
    raise GuestStalled(
        f"{name} printed nothing above {floor} on {node.name} within {timeout:.0f} s "
        f"({pattern.pattern}); serial log tail:\n{tail}\n{node.guest_report(name)}"
    )


def retry_if_guest_stalled(scenario: Callable[[int], T], attempts: int = 2) -> T:
    """Run ``scenario(attempt)``; on :class:`GuestStalled` run it again, up to ``attempts``.

    The scenario must start from a fresh guest each time and clean up what it made.
    Every stall is logged and printed, so a retried run still shows it happened.
    """
    for attempt in range(1, attempts + 1):
        try:
            return scenario(attempt)
        except GuestStalled as exc:
            if attempt == attempts:
                raise
            message = f"GUEST-STALLED attempt {attempt} of {attempts}, running again: {exc}"
            log.warning(message)
            print(message)
    raise AssertionError("unreachable")  # pragma: no cover
