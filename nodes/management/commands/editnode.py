from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from kvmmgr.cli import acting
from kvmmgr.inputs.cli import add_form_arguments, flag_of, form_data
from nodes.forms import NodeForm
from nodes.management.commands._output import validation_error_to_command_error
from nodes.models import Node
from nodes.services import registry


class Command(BaseCommand):
    help = (
        "Change a node's name, URI (the manager's path), migration address and ssh port "
        "(the peer path), virtualization or enabled flag: the node page's fields, one flag "
        "each; '' restores a default (e.g. --migration-ssh-port '')."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")
        add_form_arguments(parser, NodeForm, exclude=["enabled"])
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--enable", action="store_true")
        group.add_argument("--disable", action="store_true")

    def handle(self, *args: object, **opts: Any) -> None:
        node = Node.objects.filter(name=opts["name"]).first()
        if node is None:
            raise CommandError(f"no node named {opts['name']!r}")
        changes = form_data(opts)
        if opts["enable"] or opts["disable"]:
            changes["enabled"] = bool(opts["enable"])
        if not changes:
            flags = [
                NodeForm.cli_aliases.get(n, flag_of(n))
                for n in NodeForm.base_fields
                if n != "enabled"
            ]
            raise CommandError(f"nothing to change: give {', '.join(flags)}, --enable or --disable")
        try:
            with acting() as actor:
                node = registry.update_node(node, actor, **changes)
        except ValidationError as exc:
            raise validation_error_to_command_error(exc) from exc
        self.stdout.write(self.style.SUCCESS(f"saved node {node.name}"))
        self.stdout.write(f"peers reach it for migration at {node.peer_path}")
