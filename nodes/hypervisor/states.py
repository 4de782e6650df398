"""Our named VM states, and the translation of libvirt's domain state integers into them.

The adapter owns the vocabulary: every layer above (the inventory's model field, jobs,
stats, pages) imports ``VMState`` from here.
"""

from __future__ import annotations

import libvirt
from django.db import models


class VMState(models.TextChoices):
    RUNNING = "running", "running"
    PAUSED = "paused", "paused"
    SHUTTING_DOWN = "shutting_down", "shutting down"
    SHUTOFF = "shutoff", "shut off"
    CRASHED = "crashed", "crashed"
    SUSPENDED = "suspended", "suspended (guest PM)"
    UNKNOWN = "unknown", "unknown"

    @classmethod
    def active(cls) -> frozenset[VMState]:
        """States in which the domain has a running qemu process."""
        return frozenset({cls.RUNNING, cls.PAUSED, cls.SHUTTING_DOWN, cls.SUSPENDED})


_STATES: dict[int, VMState] = {
    libvirt.VIR_DOMAIN_NOSTATE: VMState.UNKNOWN,
    libvirt.VIR_DOMAIN_RUNNING: VMState.RUNNING,
    # "blocked on resource" is a running domain waiting for I/O or CPU.
    libvirt.VIR_DOMAIN_BLOCKED: VMState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: VMState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: VMState.SHUTTING_DOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: VMState.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: VMState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: VMState.SUSPENDED,
}


def state_from_libvirt(code: int) -> VMState:
    return _STATES.get(code, VMState.UNKNOWN)
