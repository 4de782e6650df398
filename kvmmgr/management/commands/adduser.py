from __future__ import annotations

import getpass
import sys
from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from kvmmgr import users
from kvmmgr.cli import acting
from kvmmgr.models import Role

NO_ARGV_PASSWORD = (
    "refusing a password on the command line: other users see it in `ps` and it stays in "
    "the shell history. Pipe it on standard input (printf '%s\\n' \"$PW\" | manage.py "
    "adduser NAME --role ROLE) or answer the prompt."
)


class Command(BaseCommand):
    help = (
        "Create or update a kvmmgr user: the htpasswd line nginx checks and the Django "
        "account with its role, together. The password comes from standard input (one "
        "line) or a prompt, never from the command line."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--role", required=True, help=f"one of {', '.join(Role.values)}")
        # Accepted only to refuse it with a reason instead of argparse's terse error.
        parser.add_argument("--password", help="not accepted: use stdin or the prompt")

    def handle(self, *args: object, **opts: Any) -> None:
        if opts["password"] is not None:
            raise CommandError(NO_ARGV_PASSWORD)
        name, role = str(opts["name"]), str(opts["role"])
        if role not in Role.values:
            raise CommandError(f"unknown role {role!r}: choose one of {', '.join(Role.values)}")
        password = self._password(name)
        try:
            with acting() as actor:
                created, role = users.add_user(actor, name, role, password)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages) + " (nothing changed)") from exc
        verb = "created" if created else "updated"
        self.stdout.write(self.style.SUCCESS(f"{verb} user {name} with the {role} role"))

    def _password(self, name: str) -> str:
        stdin = sys.stdin
        if stdin is not None and not stdin.isatty():
            password = stdin.readline().rstrip("\r\n")
        else:
            password = getpass.getpass(f"password for {name}: ")
            if getpass.getpass("again: ") != password:
                raise CommandError("the passwords differ (nothing changed)")
        if not password:
            raise CommandError("empty password (nothing changed)")
        return password
