"""VPN: managed OpenVPN overlays between nodes."""

from __future__ import annotations

from django.apps import AppConfig


class VpnConfig(AppConfig):
    name = "vpn"
    verbose_name = "VPN"
