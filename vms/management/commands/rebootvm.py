from __future__ import annotations

from argparse import ArgumentParser

from django.core.management.base import BaseCommand

from vms.management.commands._vmcli import add_vm_arguments, submit_for_vm
from vms.services import lifecycle


class Command(BaseCommand):
    help = "Reboot a running VM through ACPI (as a job); --wait to follow it."

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_vm_arguments(parser)

    def handle(self, *args: object, **opts: object) -> None:
        submit_for_vm(opts, lifecycle.request_reboot, self.stdout)
