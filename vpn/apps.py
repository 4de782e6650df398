"""VPN: managed OpenVPN overlays between nodes."""

from __future__ import annotations

from django.apps import AppConfig


class VpnConfig(AppConfig):
    name = "vpn"
    verbose_name = "VPN"

    def ready(self) -> None:
        from jobs import registry
        from jobs.registry import JobType
        from kvmmgr.access import Permission
        from vpn.choices import VpnJobKind

        for kind in VpnJobKind:
            registry.register(
                JobType(
                    kind=kind.value,
                    label=kind.label,
                    handler="vpn.jobs.run_action",
                    # Aborting VPN work needs the role that may start it (admin).
                    abort_permission=Permission.VPN_MANAGE,
                    stale_hint="the tunnel's state (manage.py vpn status)",
                )
            )

        # nodes and vms name tunnels in their messages through this explainer.
        from nodes.services import links
        from vpn.links import TunnelExplainer

        links.register(TunnelExplainer())
