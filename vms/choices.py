"""Choices of the VM app: the kinds of VM job and the remedies for attached media.

A VM's state (``VMState``) is the hypervisor adapter's own: nodes.hypervisor.states;
a job's status is the jobs app's (jobs.choices).
"""

from __future__ import annotations

from django.db import models


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
