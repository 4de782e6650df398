from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from kvmmgr import users
from kvmmgr.cli import acting


class Command(BaseCommand):
    help = "Deactivate a kvmmgr user and remove its htpasswd line (its audit history stays)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")

    def handle(self, *args: object, **opts: Any) -> None:
        try:
            with acting() as actor:
                users.remove_user(actor, str(opts["name"]))
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(self.style.SUCCESS(f"removed user {opts['name']}"))
