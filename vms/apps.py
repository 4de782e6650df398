from __future__ import annotations

from django.apps import AppConfig


class VmsConfig(AppConfig):
    name = "vms"
    verbose_name = "Virtual machines"

    def ready(self) -> None:
        from vms import jobkinds

        jobkinds.register()

        # nodes sits below vms: its registry reaches the inventory only through these hooks.
        from nodes.services import hooks
        from vms import inventory_tasks
        from vms.services import inventory

        hooks.on_refresh_requested(inventory_tasks.queue_refresh)
        hooks.on_node_removal(inventory.forget_node)
