"""Named states and choices of the vpn app."""

from __future__ import annotations

from django.db import models


class TunnelMode(models.TextChoices):
    ROUTED = "routed", "routed (TUN): nodes reach each other's tunnel addresses"
    BRIDGED = "bridged", "bridged (TAP): the VM bridges form one L2 segment"


class MemberRole(models.TextChoices):
    SERVER = "server", "server"
    CLIENT = "client", "client"


class VpnState(models.TextChoices):
    UNKNOWN = "unknown", "unknown"
    DOWN = "down", "down"
    CONNECTING = "connecting", "connecting"
    UP = "up", "up"
    ERROR = "error", "error"
