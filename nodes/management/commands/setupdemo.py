from __future__ import annotations

from django.core.management.base import BaseCommand

from kvmmgr.cli import acting
from nodes.hypervisor import HypervisorError, probe_host
from nodes.models import Node
from nodes.services import registry

LOCAL_URI = "qemu:///system"
TEST_URI = "test:///default"


class Command(BaseCommand):
    help = (
        "Register a demo node: the local qemu:///system where it answers, "
        "else libvirt's test driver."
    )

    def handle(self, *args: object, **opts: object) -> None:
        existing = Node.objects.filter(uri__in=[LOCAL_URI, TEST_URI]).first()
        if existing is not None:
            self.stdout.write(f"demo node already registered: {existing.name} ({existing.uri})")
            return
        try:
            probe_host(LOCAL_URI)
            name, uri = "local", LOCAL_URI
        except HypervisorError as exc:
            self.stdout.write(f"qemu:///system not usable ({exc.message}); using the test driver")
            name, uri = "demo", TEST_URI
        with acting() as actor:
            node = registry.add_node(actor=actor, name=name, uri=uri)
        self.stdout.write(self.style.SUCCESS(f"registered demo node {node.name} ({node.uri})"))
