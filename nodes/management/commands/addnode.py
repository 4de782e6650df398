from __future__ import annotations

from argparse import ArgumentParser

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand

from kvmmgr.cli import acting
from nodes.management.commands._output import validation_error_to_command_error
from nodes.models import VirtType
from nodes.services import registry


class Command(BaseCommand):
    help = "Register a KVM node, e.g.: addnode node1 qemu+ssh://root@10.0.0.5/system"

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "uri", help="qemu+ssh://user@host[:port]/system, qemu:///system or test:///…"
        )
        parser.add_argument(
            "--migration-address",
            default="",
            help="address peers use for migration (e.g. its VPN tunnel address); "
            "default: the URI's host",
        )
        parser.add_argument(
            "--migration-ssh-port",
            type=int,
            default=None,
            help="port of the node's sshd at its migration address, for peers (not the "
            "manager's port forward); default: 22, or the URI's port without --migration-address",
        )
        parser.add_argument("--disabled", action="store_true", help="register without polling it")
        parser.add_argument(
            "--virt-type",
            choices=[choice.value for choice in VirtType],
            default=VirtType.AUTO,
            help="pin guests to qemu (TCG) where KVM is missing or unusable",
        )

    def handle(self, *args: object, **opts: object) -> None:
        try:
            with acting() as actor:
                node = registry.add_node(
                    actor=actor,
                    name=str(opts["name"]),
                    uri=str(opts["uri"]),
                    migration_address=str(opts["migration_address"]),
                    migration_ssh_port=opts["migration_ssh_port"],  # type: ignore[arg-type]
                    enabled=not opts["disabled"],
                    virt_type=str(opts["virt_type"]),
                )
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
