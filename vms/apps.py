from __future__ import annotations

from django.apps import AppConfig


class VmsConfig(AppConfig):
    name = "vms"
    verbose_name = "Virtual machines"

    def ready(self) -> None:
        from vms import jobkinds

        jobkinds.register()
