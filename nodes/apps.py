from __future__ import annotations

from django.apps import AppConfig


class NodesConfig(AppConfig):
    name = "nodes"
    verbose_name = "Nodes"

    def ready(self) -> None:
        from jobs import registry
        from nodes.hypervisor import HypervisorError

        # The adapter's errors carry a message meant for the admin: no traceback.
        registry.register_expected_failure(HypervisorError)
        registry.register_reap_hook(_refresh_node_of)


def _refresh_node_of(job: object) -> None:
    """After the reaper failed a job, refresh its node so the inventory shows what happened."""
    from kvmmgr.access import Actor
    from nodes.services.registry import request_refresh

    node = getattr(job, "node", None)
    if node is not None:
        request_refresh([node], actor=Actor.system("reaper"))
