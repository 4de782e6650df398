from __future__ import annotations

from argparse import ArgumentParser

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from kvmmgr.cli import acting
from nodes.management.commands._output import validation_error_to_command_error
from nodes.models import Node
from nodes.services import hostkeys, registry


class Command(BaseCommand):
    help = (
        "Show a node's pinned ssh host key; with --fingerprint, confirm it, which allows "
        "migration trust (peers' keys in its authorized_keys) when a migration needs it; "
        "with --revoke, withdraw that and remove its key from its peers."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")
        what = parser.add_mutually_exclusive_group()
        what.add_argument(
            "--fingerprint",
            metavar="SHA256:…",
            help="the fingerprint you compared with the node's own; must be the pinned one",
        )
        what.add_argument("--revoke", action="store_true", help="withdraw the confirmation")

    def handle(self, *args: object, **opts: object) -> None:
        node = Node.objects.filter(name=opts["name"]).first()
        if node is None:
            raise CommandError(f"no node named {opts['name']!r}")
        try:
            with acting() as actor:
                if opts["revoke"]:
                    registry.revoke_trust(node, actor)
                    self.stdout.write(
                        self.style.SUCCESS(
                            f"{node.name}: trust withdrawn; its migration key is being removed "
                            f"from its peers"
                        )
                    )
                    return
                if opts["fingerprint"]:
                    registry.confirm_trust(node, actor, str(opts["fingerprint"]))
                    self.stdout.write(
                        self.style.SUCCESS(
                            f"{node.name}: host key {node.trusted_host_key} confirmed; "
                            f"migration trust is installed with a peer when a migration needs it"
                        )
                    )
                    return
        except ValidationError as exc:
            raise validation_error_to_command_error(exc) from exc
        self._show(node)

    def _show(self, node: Node) -> None:
        pinned = hostkeys.pinned_fingerprint(node)
        if not pinned:
            raise CommandError(
                f"{node.name}: no host key pinned yet (the manager has not reached it over "
                f"ssh): check it with manage.py checknode {node.name}"
            )
        self.stdout.write(f"{node.name}: pinned host key {pinned}")
        if hostkeys.trust_confirmed(node):
            self.stdout.write("confirmed: migration trust may be installed")
            return
        if node.trusted_host_key:
            self.stdout.write(
                self.style.WARNING(
                    f"the confirmed key was {node.trusted_host_key}: the pinned key changed, "
                    f"so no trust is installed until you confirm again"
                )
            )
        self.stdout.write(
            "compare it with the node's own (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub "
            f"on {node.name}), then: manage.py trustnode {node.name} --fingerprint {pinned}"
        )
