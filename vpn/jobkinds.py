"""The kinds of job ``vpn`` runs, declared to the jobs registry from ``VpnConfig.ready()``."""

from __future__ import annotations

from jobs import registry
from jobs.registry import JobType
from kvmmgr.access import Permission
from vpn.choices import VpnJobKind


def register() -> None:
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
