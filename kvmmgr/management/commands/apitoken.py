from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from kvmmgr.api import tokens
from kvmmgr.cli import acting
from kvmmgr.models import ApiToken


class Command(BaseCommand):
    help = (
        "REST API tokens: create (the key is printed once), list, revoke. A request with "
        "'Authorization: Token KEY' acts as the token's user, with that user's role."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True)
        create = sub.add_parser("create", help="a new token for USER")
        create.add_argument("user")
        create.add_argument("name", help="what it is for, e.g. ansible")
        create.add_argument("--expires-days", type=int, default=None, metavar="DAYS")
        listing = sub.add_parser("list", help="USER's tokens (never their keys)")
        listing.add_argument("user")
        revoke = sub.add_parser("revoke", help="revoke USER's token NAME")
        revoke.add_argument("user")
        revoke.add_argument("name")

    def handle(self, *args: object, **opts: Any) -> None:
        try:
            with acting() as actor:
                user = tokens.find_user(str(opts["user"]))
                if opts["verb"] == "create":
                    new = tokens.create(
                        actor, user, str(opts["name"]), expires_in_days=opts["expires_days"]
                    )
                    expiry = (
                        f"expires {new.token.expires_at:%Y-%m-%d %H:%M} UTC"
                        if new.token.expires_at
                        else "does not expire"
                    )
                    self.stdout.write(
                        f"token {new.token.name} for {user.get_username()} ({expiry}); the key "
                        "is shown only now:"
                    )
                    self.stdout.write(new.key)
                elif opts["verb"] == "list":
                    self._list(user)
                else:
                    token = ApiToken.objects.filter(
                        user=user, name=opts["name"], revoked_at__isnull=True
                    ).first()
                    if token is None:
                        raise CommandError(
                            f"{user.get_username()} has no live token named {opts['name']!r}"
                        )
                    tokens.revoke(actor, token)
                    self.stdout.write(self.style.SUCCESS(f"revoked {token.name}"))
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc

    def _list(self, user: Any) -> None:
        for token in ApiToken.objects.filter(user=user).order_by("name", "created_at"):
            state = (
                "revoked" if token.revoked_at else "expired" if tokens.is_expired(token) else "live"
            )
            used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
            expires = f"{token.expires_at:%Y-%m-%d}" if token.expires_at else "-"
            self.stdout.write(
                f"{token.name}\t{token.prefix}…\t{state}\tcreated {token.created_at:%Y-%m-%d}"
                f"\texpires {expires}\tlast used {used}"
            )
