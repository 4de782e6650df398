from __future__ import annotations

import os
import secrets
from argparse import ArgumentParser
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create a login for the development server with a generated password, kept in a "
        "0600 file; does nothing if the user exists. Production logins come from nginx."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--password-file", required=True, type=Path)

    def handle(self, *args: object, **opts: object) -> None:
        username = str(opts["username"])
        path: Path = opts["password_file"]  # type: ignore[assignment]
        users = get_user_model().objects
        if users.filter(username=username).exists() and path.exists():
            return
        password = secrets.token_urlsafe(12)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(password + "\n")
        user = users.filter(username=username).first() or users.model(username=username)
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        self.stdout.write(f"login {username} created; password in {path}")
