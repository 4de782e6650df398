"""Named VM states: libvirt integers are translated once, in the hypervisor adapter."""

from __future__ import annotations

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
