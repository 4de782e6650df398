from __future__ import annotations

from argparse import ArgumentParser

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from kvmmgr.cli import acting
from nodes.management.commands._output import validation_error_to_command_error
from nodes.models import Node, VirtType
from nodes.services import registry


class Command(BaseCommand):
    help = (
        "Change a node's name, URI (the manager's path), migration address and ssh port "
        "(the peer path) or enabled flag."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--rename")
        parser.add_argument("--uri")
        parser.add_argument("--migration-address", help="address peers use for migration")
        parser.add_argument(
            "--migration-ssh-port",
            help="port of the node's sshd at its migration address, for peers; "
            "'' restores the default (22, or the URI's port without a migration address)",
        )
        parser.add_argument("--virt-type", choices=[choice.value for choice in VirtType])
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--enable", action="store_true")
        group.add_argument("--disable", action="store_true")

    def handle(self, *args: object, **opts: object) -> None:
        node = Node.objects.filter(name=opts["name"]).first()
        if node is None:
            raise CommandError(f"no node named {opts['name']!r}")
        changes: dict[str, object] = {}
        if opts["rename"] is not None:
            changes["name"] = opts["rename"]
        if opts["uri"] is not None:
            changes["uri"] = opts["uri"]
        if opts["migration_address"] is not None:
            changes["migration_address"] = opts["migration_address"]
        if opts["migration_ssh_port"] is not None:
            changes["migration_ssh_port"] = _port(str(opts["migration_ssh_port"]))
        if opts["virt_type"] is not None:
            changes["virt_type"] = opts["virt_type"]
        if opts["enable"]:
            changes["enabled"] = True
        if opts["disable"]:
            changes["enabled"] = False
        if not changes:
            raise CommandError(
                "nothing to change: give --rename, --uri, --migration-address, "
                "--migration-ssh-port, --virt-type, --enable or --disable"
            )
        try:
            with acting() as actor:
                registry.update_node(node, actor, **changes)
        except ValidationError as exc:
            raise validation_error_to_command_error(exc) from exc
        self.stdout.write(self.style.SUCCESS(f"saved node {node.name}"))
        self.stdout.write(f"peers reach it for migration at {node.peer_path}")


def _port(raw: str) -> int | None:
    """'' clears the setting; anything else must be a whole number (the model checks range)."""
    if not raw.strip():
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise CommandError(f"--migration-ssh-port must be a port number (got {raw!r})") from exc
