from __future__ import annotations

from argparse import ArgumentParser

from django.core.management.base import BaseCommand, CommandError

from kvmmgr.access import Permission, require
from kvmmgr.cli import acting
from nodes.models import Node
from nodes.services import registry
from vms.services import inventory


class Command(BaseCommand):
    help = "Refresh the VM inventory: queue it for the workers, or --now in this process."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("names", nargs="*", help="node names (default: every enabled node)")
        parser.add_argument("--now", action="store_true", help="contact the nodes here and wait")

    def handle(self, *args: object, **opts: object) -> None:
        names: list[str] = list(opts["names"])  # type: ignore[arg-type]
        nodes = list(
            Node.objects.filter(name__in=names) if names else Node.objects.filter(enabled=True)
        )
        missing = set(names) - {n.name for n in nodes}
        if missing:
            raise CommandError(f"no node named {', '.join(sorted(missing))}")
        with acting() as actor:
            if not opts["now"]:
                registry.request_refresh(nodes, actor=actor)
            else:
                require(actor, Permission.NODE_REFRESH, action="node.refresh")
        if not opts["now"]:
            self.stdout.write(f"queued a refresh of {len(nodes)} node(s)")
            return
        failed = 0
        for node in nodes:
            result = inventory.refresh_node(node)
            if result.ok:
                self.stdout.write(
                    f"{node.name}: {result.domains} domains "
                    f"({result.created} new, {result.vanished} vanished)"
                )
            else:
                failed += 1
                self.stderr.write(f"{node.name}: {result.error}")
        if failed:
            raise CommandError(f"{failed} node(s) could not be refreshed")
