from __future__ import annotations

from argparse import ArgumentParser

from django.core.management.base import BaseCommand, CommandError

from jobs.models import Job
from kvmmgr.access import Actor
from vms.management.commands._vmcli import add_vm_arguments, submit_for_vm
from vms.models import VirtualMachine
from vms.services import lifecycle


class Command(BaseCommand):
    help = (
        "Shut a VM down through ACPI, failing after --timeout seconds if the guest ignores it; "
        "--force pulls the plug instead (virsh destroy)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_vm_arguments(parser)
        parser.add_argument("--force", action="store_true", help="force off (virsh destroy)")
        parser.add_argument(
            "--timeout",
            type=int,
            default=lifecycle.DEFAULT_SHUTDOWN_TIMEOUT,
            help=f"seconds to wait for the guest (default {lifecycle.DEFAULT_SHUTDOWN_TIMEOUT})",
        )

    def handle(self, *args: object, **opts: object) -> None:
        if opts["force"]:
            submit_for_vm(opts, lifecycle.request_force_off, self.stdout)
            return
        if not (
            lifecycle.MIN_SHUTDOWN_TIMEOUT <= opts["timeout"] <= lifecycle.MAX_SHUTDOWN_TIMEOUT
        ):
            raise CommandError(
                f"--timeout must be from {lifecycle.MIN_SHUTDOWN_TIMEOUT} to "
                f"{lifecycle.MAX_SHUTDOWN_TIMEOUT} seconds."
            )

        def request(vm: VirtualMachine, user: Actor) -> Job:
            return lifecycle.request_shutdown(vm, user, timeout=opts["timeout"])

        submit_for_vm(opts, request, self.stdout)
