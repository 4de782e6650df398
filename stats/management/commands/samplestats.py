from __future__ import annotations

import time
from argparse import ArgumentParser

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from nodes.models import Node
from stats.services import sampling
from stats.tasks import online_node_ids


class Command(BaseCommand):
    help = (
        "Sample resource stats of the online nodes in this process: --once for one cycle, "
        "else every KVMMGR_STATS_INTERVAL until interrupted (the beat task does this normally)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("names", nargs="*", help="node names (default: every online node)")
        parser.add_argument("--once", action="store_true", help="one cycle, then exit")

    def handle(self, *args: object, **opts: object) -> None:
        names: list[str] = list(opts["names"])  # type: ignore[arg-type]
        if names:
            nodes = list(Node.objects.filter(name__in=names))
            missing = set(names) - {n.name for n in nodes}
            if missing:
                raise CommandError(f"no node named {', '.join(sorted(missing))}")
        else:
            nodes = list(Node.objects.filter(pk__in=online_node_ids()))
        while True:
            failed = self._cycle(nodes)
            if opts["once"]:
                break
            time.sleep(settings.KVMMGR_STATS_INTERVAL)
        if failed:
            raise CommandError(f"{failed} node(s) could not be sampled")

    def _cycle(self, nodes: list[Node]) -> int:
        failed = 0
        for node in nodes:
            started = time.monotonic()
            result = sampling.sample_node(node)
            took = (time.monotonic() - started) * 1000
            if result.ok:
                self.stdout.write(f"{node.name}: {result.samples} VM samples in {took:.0f} ms")
            else:
                failed += 1
                self.stderr.write(f"{node.name}: {result.error}")
        return failed
