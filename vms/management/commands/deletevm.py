from __future__ import annotations

from argparse import ArgumentParser

from django.core.management.base import BaseCommand

from jobs.models import Job
from kvmmgr.access import Actor
from vms.management.commands._vmcli import add_vm_arguments, submit_for_vm
from vms.models import VirtualMachine
from vms.services import lifecycle


class Command(BaseCommand):
    help = (
        "Delete a VM (undefine, with managed save, snapshot/checkpoint metadata and NVRAM). "
        "Disks are kept unless --delete-disks (all its own disks) or --disk TARGET is given."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_vm_arguments(parser)
        parser.add_argument(
            "--delete-disks",
            action="store_true",
            help="also delete every disk of the VM's own (never CD-ROMs or shared disks)",
        )
        parser.add_argument(
            "--disk",
            action="append",
            default=[],
            metavar="TARGET",
            help="delete only this disk (target name such as vda); repeatable",
        )
        parser.add_argument(
            "--force-off", action="store_true", help="force the VM off first if it runs"
        )

    def handle(self, *args: object, **opts: object) -> None:
        def request(vm: VirtualMachine, user: Actor) -> Job:
            disks = list(opts["disk"])
            if opts["delete_disks"]:
                disks += [d["target"] for d in lifecycle.deletable_disks(vm)]
            return lifecycle.request_delete(vm, user, disks=disks, force_off=opts["force_off"])

        submit_for_vm(opts, request, self.stdout)
