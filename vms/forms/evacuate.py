"""An evacuation's input: the one schema for the node's evacuate page, ``evacuate``
and the API. The migration options for every move are ``MigrationOptionsForm``'s."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from django import forms
from django.core.exceptions import ValidationError

from kvmmgr.inputs.fields import Flag, WholeNumber, errors_of
from vms.forms.migrate import migration_options

MAX_PARALLEL = 8


class NameList(forms.Field):
    """Node names: a list (the page's multi-select, JSON) or comma-separated (the CLI)."""

    widget = forms.SelectMultiple
    hidden_widget = forms.MultipleHiddenInput
    api_kind = "list"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> list[str]:
        if value in self.empty_values:
            return []
        items = value if isinstance(value, list | tuple) else str(value).split(",")
        return [str(item).strip() for item in items if str(item).strip()]


class OptionsField(forms.Field):
    """Migration options for every move, checked by ``MigrationOptionsForm`` and kept
    as given (each move's job validates them again when it starts)."""

    widget = forms.HiddenInput
    api_kind = "dict"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> dict[str, Any]:
        if value in self.empty_values:
            return {}
        if not isinstance(value, Mapping):
            raise ValidationError("Migration options are a mapping of option to value.")
        return dict(value)

    def validate(self, value: dict[str, Any]) -> None:
        try:
            migration_options(value)
        except ValidationError as exc:
            raise ValidationError(exc.messages) from None


def _moves(noun: str, text: str) -> WholeNumber:
    return WholeNumber(
        noun=noun,
        label=noun,
        low=1,
        high=MAX_PARALLEL,
        default=1,
        invalid=text,
        out_of_range=text,
    )


class EvacuateForm(forms.Form):
    """Which VMs go where, how many at once, with which migration options."""

    cli_aliases: ClassVar[dict[str, str]] = {"returning": "--return"}

    to = NameList(
        label="Only to",
        help_text="only to these nodes (default: any that fits)",
        widget=forms.SelectMultiple(attrs={"size": "4"}),
    )
    parallel = _moves("Migrations at once", f"1 to {MAX_PARALLEL} migrations at once.")
    per_destination = _moves(
        "Migrations into one node at once",
        f"1 to {MAX_PARALLEL} migrations into one node at once.",
    )
    include_stopped = Flag(label="stopped VMs too (cold migration)")
    options = OptionsField(help_text="migration options for every move")
    returning = Flag(label="move back the VMs the node's last evacuation moved")
    dry_run = Flag(label="the plan only")

    def __init__(self, data: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if data is not None and hasattr(data, "getlist"):
            lists = {"to": data.getlist("to")}
            data = {**{k: data.get(k) for k in data}, **lists}
        super().__init__(data, **kwargs)

    def values(self) -> dict[str, Any]:
        """The validated input; raises ``ValidationError`` per field when not valid."""
        if not self.is_valid():
            raise errors_of(self)
        return dict(self.cleaned_data)
