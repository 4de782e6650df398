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


class VpnJobKind(models.TextChoices):
    """OpenVPN on a tunnel member (``vpn.jobs``); the target reads "tunnel t1 on node2"."""

    VPN_UP = "vpn_up", "VPN up"
    VPN_START = "vpn_start", "VPN start"
    VPN_STOP = "vpn_stop", "VPN stop"
    VPN_RESTART = "vpn_restart", "VPN restart"
