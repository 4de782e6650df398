"""VPN: managed OpenVPN overlays between nodes."""

from __future__ import annotations

from django.apps import AppConfig


class VpnConfig(AppConfig):
    name = "vpn"
    verbose_name = "VPN"

    def ready(self) -> None:
        from nodes.services import links
        from vpn import jobkinds
        from vpn.links import TunnelExplainer

        jobkinds.register()
        # nodes and vms name tunnels in their messages through this explainer.
        links.register(TunnelExplainer())
