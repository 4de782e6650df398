"""Shared formatting for node commands."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError


def validation_error_to_command_error(exc: ValidationError) -> CommandError:
    if hasattr(exc, "message_dict"):
        lines = [
            f"{field}: {message}" if field != "__all__" else message
            for field, messages in exc.message_dict.items()
            for message in messages
        ]
    else:
        lines = list(exc.messages)
    return CommandError("nothing saved:\n  " + "\n  ".join(lines))
