"""Form fields whose messages name the field, the same on the page, the CLI and the API.

Django's stock messages ("Enter a whole number.") do not say which option was wrong
when a command prints them on one line, so these fields carry a noun for their messages.
An empty value means "not given": the field's default, so a form bound to a partial
mapping (a script, a stored job's params) fills in what was left out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

TRUE_WORDS = frozenset({"1", "true", "on", "yes"})


def truthy(value: Any) -> bool:
    """A checkbox, a CLI switch, JSON or a stored param: only these words mean yes."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in TRUE_WORDS


class WholeNumber(forms.IntegerField):
    """A whole number in ``[low, high]``; rendered as text so the server explains a bad one.

    ``noun`` names the field in messages; ``None`` as default makes it optional
    without a default, ``required`` makes an empty value an error.
    """

    widget = forms.TextInput

    def __init__(
        self,
        *,
        noun: str,
        low: int | None = None,
        high: int | None = None,
        default: int | None = None,
        invalid: str = "{noun} must be a whole number (got {value!r}).",
        out_of_range: str = "{noun} must be between {low} and {high} (got {value}).",
        required_message: str = "{noun} is required.",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("initial", default)
        kwargs.setdefault("widget", forms.TextInput(attrs={"inputmode": "numeric"}))
        super().__init__(**kwargs)
        # Kept as attributes (for the API schema and CLI help), not as Django's
        # validators: their messages would differ from ours.
        self.min_value, self.max_value = low, high
        self.noun, self.default = noun, default
        self.messages = {
            "invalid": invalid,
            "range": out_of_range,
            "required": required_message,
        }

    def _fail(self, key: str, code: str, **params: Any) -> ValidationError:
        if "value" in params:
            params["short"] = str(params["value"])[:20]
        text = self.messages[key].format(
            noun=self.noun, low=self.min_value, high=self.max_value, **params
        )
        return ValidationError(text, code=code)

    def to_python(self, value: Any) -> int | None:
        if value in self.empty_values:
            return self.default
        if isinstance(value, bool):
            raise self._fail("invalid", "invalid", value=value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise self._fail("invalid", "invalid", value=value) from None

    def validate(self, value: int | None) -> None:
        if value is None:
            if self.required:
                raise self._fail("required", "required")
            return
        low, high = self.min_value, self.max_value
        if (low is not None and value < low) or (high is not None and value > high):
            raise self._fail("range", "range", value=value)

    def run_validators(self, value: Any) -> None:
        return None


class Checkbox(forms.CheckboxInput):
    """Hands the raw value to the field: Django's widget would call ``bool("off")``."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs, check_test=truthy)

    def value_from_datadict(self, data: Any, files: Any, name: str) -> Any:
        return data.get(name)


class Flag(forms.BooleanField):
    """A yes/no option: checked box, ``--flag``, JSON ``true`` or one of ``TRUE_WORDS``.

    Left out, it is ``default`` (no by default). A page whose unchecked box means no
    for a flag that defaults to yes says so when it binds (``unchecked_means_no``).
    """

    widget = Checkbox

    def __init__(self, *, default: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("initial", default)
        super().__init__(**kwargs)
        self.default = default

    def to_python(self, value: Any) -> bool:
        return self.default if value is None else truthy(value)


def unchecked_means_no(form_class: type[forms.BaseForm], data: Any) -> dict[str, Any]:
    """A page's POST for ``form_class``: a checkbox left unchecked sends nothing, so
    each ``Flag`` the POST lacks is no (the CLI and the API leave it out for its default)."""
    values: dict[str, Any] = {key: data.get(key) for key in data}
    for name, field in form_class.base_fields.items():
        if isinstance(field, Flag):
            values.setdefault(name, False)
    return values


class Choice(forms.ChoiceField):
    """One of ``choices``; empty means ``default``; a bad one gets ``message``.

    ``message`` may use ``{choices}`` (the non-empty values, comma-separated) and
    ``{value}``. ``normalize`` runs on the stripped text (e.g. ``str.lower``); without
    it the text is taken as sent.
    """

    def __init__(
        self,
        *,
        choices: Sequence[tuple[str, str]],
        default: str,
        message: str,
        normalize: Callable[[str], str] | None = str.lower,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("initial", default)
        super().__init__(choices=choices, **kwargs)
        self.default, self.message, self.normalize = default, message, normalize

    def values(self) -> list[str]:
        return [str(value) for value, _ in self.choices]

    def to_python(self, value: Any) -> str:
        if value in self.empty_values:
            return self.default
        text = str(value)
        if self.normalize is not None:
            text = self.normalize(text.strip())
        return text or self.default

    def validate(self, value: str) -> None:
        if value == self.default:
            return  # "not given" (the form may tell what that means)
        if value not in self.values():
            choices = ", ".join(v for v in self.values() if v)
            raise ValidationError(
                self.message.format(choices=choices, value=value), code="invalid_choice"
            )


def errors_of(form: forms.Form) -> ValidationError:
    """A bound, invalid form's errors as one ``ValidationError`` (per field)."""
    return ValidationError(form.errors.as_data())
