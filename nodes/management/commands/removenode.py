from __future__ import annotations

from argparse import ArgumentParser

from django.core.management.base import BaseCommand, CommandError

from kvmmgr.cli import acting
from nodes.models import Node
from nodes.services import registry


class Command(BaseCommand):
    help = "Forget a node and its inventory (nothing on the host changes)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    def handle(self, *args: object, **opts: object) -> None:
        node = Node.objects.filter(name=opts["name"]).first()
        if node is None:
            raise CommandError(f"no node named {opts['name']!r}")
        if not opts["yes"]:
            answer = input(f"Remove node {node.name} and its inventory? [y/N] ")
            if answer.strip().lower() not in {"y", "yes"}:
                raise CommandError("not removed")
        with acting() as actor:
            removed = registry.remove_node(node, actor)
        self.stdout.write(
            self.style.SUCCESS(f"removed node {opts['name']} ({removed} inventory rows)")
        )
