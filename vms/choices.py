"""Choices of the VM app's models: job status and kind, media remedies.

A VM's state (``VMState``) is the hypervisor adapter's own: nodes.hypervisor.states.
"""

from __future__ import annotations

from django.db import models


class JobStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    ABORTED = "aborted", "aborted"

    @classmethod
    def active(cls) -> tuple[str, ...]:
        return (cls.QUEUED, cls.RUNNING)

    @classmethod
    def terminal(cls) -> tuple[str, ...]:
        return (cls.SUCCEEDED, cls.FAILED, cls.ABORTED)


class JobKind(models.TextChoices):
    CREATE = "create", "create VM"
    START = "start", "start"
    SHUTDOWN = "shutdown", "shut down"
    FORCE_OFF = "force_off", "force off"
    REBOOT = "reboot", "reboot"
    DELETE = "delete", "delete VM"
    MIGRATE = "migrate", "migrate"
    # A parent job: moves every VM off a node (or back) through child migrate jobs.
    EVACUATE = "evacuate", "evacuate node"
    # OpenVPN on a tunnel member (vpn/jobs.py); the target reads "tunnel t1 on node2".
    VPN_UP = "vpn_up", "VPN up"
    VPN_START = "vpn_start", "VPN start"
    VPN_STOP = "vpn_stop", "VPN stop"
    VPN_RESTART = "vpn_restart", "VPN restart"

    @classmethod
    def vpn(cls) -> tuple[str, ...]:
        return (cls.VPN_UP, cls.VPN_START, cls.VPN_STOP, cls.VPN_RESTART)


class MediaRemedy(models.TextChoices):
    """What a migration does with a CD-ROM/floppy image or read-only disk the destination lacks."""

    REFUSE = "", "nothing: the pre-check fails and says what to do"
    EJECT = "eject", "take the media out for the move (the VM arrives with empty drives)"
    COPY = "copy", "copy the images to the destination's pool first"
