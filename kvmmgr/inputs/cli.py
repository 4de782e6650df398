"""manage.py flags generated from a form: adding a field to the form adds its flag.

Each field ``some_name`` becomes ``--some-name`` (plus the alias the form lists in
``cli_aliases``): a ``Flag`` a switch, a choice field ``choices=`` its values, any
other field a string the form then parses, so a bad value is explained in the
form's words. Help is the field's help text, else its label. A flag left out is
not passed on: the form's default applies, as on the page and in the API.
"""

from __future__ import annotations

from argparse import ArgumentParser
from collections.abc import Iterable, Mapping
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from kvmmgr.inputs.fields import Flag

PREFIX = "form_"  # argparse dests, so a field never collides with a command's own options


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def _help(name: str, field: forms.Field) -> str:
    text = str(field.help_text or field.label or name.replace("_", " "))
    low, high = getattr(field, "min_value", None), getattr(field, "max_value", None)
    notes = []
    if low is not None or high is not None:
        notes.append(f"{'' if low is None else low}–{'' if high is None else high}")
    default = getattr(field, "default", None)
    if default not in (None, "", False):
        notes.append(f"default: {default}")
    if notes:
        text += f" ({'; '.join(notes)})"
    return text.replace("%", "%%")


def add_form_arguments(
    parser: ArgumentParser,
    form_class: type[forms.BaseForm],
    *,
    exclude: Iterable[str] = (),
    group: Any = None,
    prefix: str = PREFIX,
    aliases: bool = True,
) -> None:
    """Add one option per field of ``form_class`` (but ``exclude``) to ``parser``.

    A second form's flags on one command take their own ``prefix`` (read back with
    ``form_data(opts, prefix)``) and, where its older spellings would collide with the
    first form's, ``aliases=False``.
    """
    target = group or parser
    spellings: Mapping[str, str] = getattr(form_class, "cli_aliases", {}) if aliases else {}
    skip = set(exclude)
    for name, field in form_class.base_fields.items():
        if name in skip:
            continue
        flags = [flag_of(name)]
        if name in spellings:
            flags.insert(0, spellings[name])
        kwargs: dict[str, Any] = {
            "dest": prefix + name,
            "default": None,
            "help": _help(name, field),
        }
        if isinstance(field, Flag):
            kwargs["action"] = "store_true"
        elif isinstance(field, forms.ChoiceField) and field.choices:
            kwargs["choices"] = [str(v) for v, _ in field.choices if v != ""]
        else:
            kwargs["metavar"] = name.upper()
        target.add_argument(*flags, **kwargs)


def form_data(opts: Mapping[str, Any], prefix: str = PREFIX) -> dict[str, Any]:
    """The flags the admin gave, by field name (what a form is bound to)."""
    return {
        key.removeprefix(prefix): value
        for key, value in opts.items()
        if key.startswith(prefix) and value not in (None, False)
    }


def refusal(exc: ValidationError, *, per_line: bool = False) -> CommandError:
    """A form's or service's ``ValidationError`` as the command's error, messages verbatim."""
    if not hasattr(exc, "error_dict"):
        return CommandError("; ".join(exc.messages))
    if not per_line:
        return CommandError("; ".join(m for ms in exc.message_dict.values() for m in ms))
    lines = [
        f"{field}: {message}" if field != "__all__" else message
        for field, messages in exc.message_dict.items()
        for message in messages
    ]
    return CommandError("refused, nothing changed:\n  " + "\n  ".join(lines))
