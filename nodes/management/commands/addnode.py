from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand

from kvmmgr.cli import acting
from kvmmgr.inputs.cli import add_form_arguments, form_data
from nodes.forms import NodeForm
from nodes.management.commands._output import validation_error_to_command_error
from nodes.services import registry


class Command(BaseCommand):
    help = (
        "Register a KVM node, e.g.: addnode node1 qemu+ssh://root@10.0.0.5/system. "
        "The options are the node page's, one flag per field."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")
        parser.add_argument("uri", help=str(NodeForm.base_fields["uri"].help_text))
        add_form_arguments(parser, NodeForm, exclude=["name", "uri", "enabled"])
        parser.add_argument("--disabled", action="store_true", help="register without polling it")

    def handle(self, *args: object, **opts: Any) -> None:
        data = {"name": opts["name"], "uri": opts["uri"], **form_data(opts)}
        if opts["disabled"]:
            data["enabled"] = False
        try:
            with acting() as actor:
                node = registry.add_node(actor=actor, **data)
        except ValidationError as exc:
            raise validation_error_to_command_error(exc) from exc
        self.stdout.write(self.style.SUCCESS(f"added node {node.name} ({node.uri})"))
        self.stdout.write(f"peers reach it for migration at {node.peer_path}")
        self.stdout.write(f"check it with: manage.py checknode {node.name}")
        if node.uri.startswith("qemu+ssh://"):
            self.stdout.write(
                f"before it can migrate: compare and confirm its host key with "
                f"manage.py trustnode {node.name}"
            )
