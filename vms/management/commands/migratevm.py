from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from jobs.models import Job
from kvmmgr.access import Actor
from kvmmgr.inputs.cli import add_form_arguments, form_data, refusal
from nodes.models import Node
from vms.forms.migrate import MigrationOptionsForm
from vms.management.commands._vmcli import add_vm_arguments, submit_for_vm
from vms.models import VirtualMachine
from vms.services.migration.request import request_migration


class Command(BaseCommand):
    help = (
        "Live-migrate a running VM with its local disks to another node "
        "(virsh migrate --live --p2p --copy-storage-all --persistent --undefinesource). "
        "The options are the migrate page's, one flag per field."
    )
    # Django's system checks (~0.2 s of every start, the biggest share of the CLI's own
    # cost over raw virsh) are for deploys and CI (`manage.py check`); an admin's
    # migration re-checks nothing they cover, like `manage.py shell`.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_vm_arguments(parser)
        parser.add_argument("destination", help="destination node name")
        add_form_arguments(parser, MigrationOptionsForm)
        parser.add_argument(
            "--compressed", action="store_true", help="the same as --compress xbzrle"
        )

    def handle(self, *args: object, **opts: Any) -> None:
        dest = Node.objects.filter(name=opts["destination"]).first()
        if dest is None:
            raise CommandError(f"no node named {opts['destination']!r}")
        data = form_data(opts)
        if opts["compressed"]:
            data[MigrationOptionsForm.legacy_compressed] = True
        try:
            options = MigrationOptionsForm(data).options()
        except ValidationError as exc:
            raise refusal(exc) from exc

        def request(vm: VirtualMachine, user: Actor) -> Job:
            return request_migration(vm, dest, options, user)

        submit_for_vm(opts, request, self.stdout)
