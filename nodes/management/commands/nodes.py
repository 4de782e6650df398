from __future__ import annotations

import json
from argparse import ArgumentParser

from django.core.management.base import BaseCommand
from django.db.models import Count, Q
from django.utils import timezone

from nodes.models import Node


def _age(node: Node) -> str:
    if node.last_seen is None:
        return "never"
    seconds = int((timezone.now() - node.last_seen).total_seconds())
    return f"{seconds}s ago"


class Command(BaseCommand):
    help = "List nodes with their status, as last observed (no host is contacted)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: object, **opts: object) -> None:
        nodes = Node.objects.annotate(
            vm_count=Count("vms", filter=Q(vms__vanished_at__isnull=True))
        ).order_by("name")
        if opts["json"]:
            payload = [
                {
                    "name": n.name,
                    "uri": n.uri,
                    "status": n.status_label,
                    "migration_address": n.effective_migration_address,
                    "migration_ssh_port": n.effective_migration_ssh_port,
                    "peer_path": n.peer_path,
                    "enabled": n.enabled,
                    "vms": n.vm_count,
                    "last_seen": n.last_seen.isoformat() if n.last_seen else None,
                    "last_error": n.last_error,
                }
                for n in nodes
            ]
            self.stdout.write(json.dumps(payload, indent=2))
            return
        rows = [("NAME", "STATUS", "VMS", "LAST SEEN", "URI", "ERROR")]
        rows += [
            (n.name, n.status_label, str(n.vm_count), _age(n), n.uri, n.last_error[:60])
            for n in nodes
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True)]
            self.stdout.write("  ".join([*cells, row[5]]).rstrip())
