"""The CLI side of access control: who runs the command, and refusals as CommandError."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.exceptions import PermissionDenied
from django.core.management.base import CommandError

from kvmmgr.access import Actor, cli_actor


@contextmanager
def acting() -> Iterator[Actor]:
    """Yield the command's actor; a role refusal ends the command with its message."""
    try:
        yield cli_actor()
    except PermissionDenied as exc:
        raise CommandError(f"refused: {exc}") from exc
