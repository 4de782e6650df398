from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from kvmmgr.cli import acting
from kvmmgr.inputs.cli import add_form_arguments, form_data
from nodes.forms import MaintenanceForm
from nodes.management.commands._output import validation_error_to_command_error
from nodes.models import Node
from nodes.services import registry


class Command(BaseCommand):
    help = (
        "Put a node in maintenance (it is never chosen as a destination: create, migrate) "
        "or take it out. Its VMs keep running; nothing on the host changes."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")
        parser.add_argument("state", choices=["on", "off"], help="MaintenanceForm's 'on'")
        add_form_arguments(parser, MaintenanceForm, exclude=["on"])

    def handle(self, *args: object, **opts: Any) -> None:
        node = Node.objects.filter(name=opts["name"]).first()
        if node is None:
            raise CommandError(f"no node named {opts['name']!r}")
        data = {"reason": "", **form_data(opts), "on": opts["state"]}
        try:
            with acting() as actor:
                node = registry.set_maintenance(node, actor, **data)
        except ValidationError as exc:
            raise validation_error_to_command_error(exc) from exc
        if node.in_maintenance:
            since = f"{node.maintenance_since:%Y-%m-%d %H:%M} UTC"
            self.stdout.write(
                self.style.SUCCESS(f"{node.name} is in maintenance since {since}: no new VMs")
            )
        else:
            self.stdout.write(self.style.SUCCESS(f"{node.name} is out of maintenance"))
