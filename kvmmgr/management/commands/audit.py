from __future__ import annotations

import sys
from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from kvmmgr import audit
from kvmmgr.access import Permission, require
from kvmmgr.cli import acting


class Command(BaseCommand):
    help = "Export the audit log (oldest first) as CSV or JSON lines, optionally filtered."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--format", choices=["csv", "json"], default="csv")
        parser.add_argument("--user", dest="actor", help="only this user")
        parser.add_argument("--action", help="action prefix, e.g. vm. or node.add")
        parser.add_argument("--target", help="target contains this text")
        parser.add_argument("--result", help="ok, denied, refused or failed")
        parser.add_argument("--job", help="only entries of this job number")
        parser.add_argument("--since", help="date or ISO time (UTC unless it says)")
        parser.add_argument("--until", help="date or ISO time (UTC unless it says)")

    def handle(self, *args: object, **opts: Any) -> None:
        with acting() as actor:
            require(actor, Permission.AUDIT_VIEW, action="audit.export")
        filters = {key: str(opts.get(key) or "") for key in audit.FILTERS}
        try:
            entries = audit.filtered(filters).order_by("at", "pk")
            count = audit.export(entries.iterator(), self.stdout, opts["format"])
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        sys.stderr.write(f"{count} entries\n")
