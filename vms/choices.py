"""Named VM states (libvirt integers are translated once, in the hypervisor adapter),
the kinds of VM job, and migration choices."""

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


class JobKind(models.TextChoices):
    """The kinds of job ``vms`` registers (``vms.jobkinds``); the field stores the value."""

    CREATE = "create", "create VM"
    START = "start", "start"
    SHUTDOWN = "shutdown", "shut down"
    FORCE_OFF = "force_off", "force off"
    REBOOT = "reboot", "reboot"
    DELETE = "delete", "delete VM"
    MIGRATE = "migrate", "migrate"
    # A parent job: moves every VM off a node (or back) through child migrate jobs.
    EVACUATE = "evacuate", "evacuate node"


class MediaRemedy(models.TextChoices):
    """What a migration does with a CD-ROM/floppy image or read-only disk the destination lacks."""

    REFUSE = "", "nothing: the pre-check fails and says what to do"
    EJECT = "eject", "take the media out for the move (the VM arrives with empty drives)"
    COPY = "copy", "copy the images to the destination's pool first"
