from __future__ import annotations

from django.core.management.base import BaseCommand

from nodes.services.sshkeys import public_key


class Command(BaseCommand):
    help = "Print the manager's public SSH key (created on first use) for nodes' authorized_keys."

    def handle(self, *args: object, **opts: object) -> None:
        self.stdout.write(public_key())
