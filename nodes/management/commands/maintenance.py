from __future__ import annotations

from argparse import ArgumentParser

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from kvmmgr.cli import acting
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
        parser.add_argument("state", choices=["on", "off"])
        parser.add_argument("--reason", default="", help="shown wherever the node is listed")

    def handle(self, *args: object, **opts: object) -> None:
        node = Node.objects.filter(name=opts["name"]).first()
        if node is None:
            raise CommandError(f"no node named {opts['name']!r}")
        try:
            with acting() as actor:
                registry.set_maintenance(
                    node, actor, opts["state"] == "on", str(opts["reason"] or "")
                )
        except ValidationError as exc:
            raise validation_error_to_command_error(exc) from exc
        if node.in_maintenance:
            since = f"{node.maintenance_since:%Y-%m-%d %H:%M} UTC"
            self.stdout.write(
                self.style.SUCCESS(f"{node.name} is in maintenance since {since}: no new VMs")
            )
        else:
            self.stdout.write(self.style.SUCCESS(f"{node.name} is out of maintenance"))
