"""DRF serializers generated from a form: the API documents the form's fields and the
form validates them, so a body gets the page's and the command's messages.

Each mirrored field only carries the schema (type, range, choices, help) for the
OpenAPI document; it hands the raw value on untouched, and ``validate`` binds the
form to what the body held. A field the body left out is left out of the form too,
which then applies its default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from django import forms
from rest_framework import serializers
from rest_framework.fields import SkipField, empty

from kvmmgr.inputs.fields import Flag, WholeNumber, errors_of


class _Raw:
    """The value as sent: the form, not DRF, parses and judges it."""

    def run_validation(self, data: Any = empty) -> Any:
        if data is empty:
            raise SkipField()
        return data


class RawBoolean(_Raw, serializers.BooleanField):
    pass


class RawInteger(_Raw, serializers.IntegerField):
    pass


class RawChoice(_Raw, serializers.ChoiceField):
    pass


class RawString(_Raw, serializers.CharField):
    pass


class RawList(_Raw, serializers.ListField):
    pass


class RawDict(_Raw, serializers.DictField):
    pass


def mirror(field: forms.Field) -> serializers.Field:
    """The schema-only serializer field for one form field."""
    help_text = str(field.help_text or field.label or "")
    common: dict[str, Any] = {"required": field.required, "help_text": help_text}
    default = getattr(field, "default", None)
    if not field.required and default not in (None, ""):
        common["default"] = default
    kind = getattr(field, "api_kind", "")
    if kind == "list":
        return RawList(child=serializers.CharField(), **common)
    if kind == "dict":
        return RawDict(**common)
    if kind == "bool":
        return RawBoolean(**common)
    if isinstance(field, Flag):
        common.setdefault("default", False)
        return RawBoolean(**common)
    if isinstance(field, WholeNumber):
        return RawInteger(
            min_value=field.min_value,
            max_value=field.max_value,
            allow_null=not field.required,
            **common,
        )
    if isinstance(field, forms.ChoiceField) and field.choices:
        pairs = [(str(v), str(label)) for v, label in field.choices]
        return RawChoice(choices=pairs, allow_blank="" in dict(pairs), **common)
    return RawString(
        max_length=getattr(field, "max_length", None), allow_blank=not field.required, **common
    )


class FormSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """Validates through ``form_class``; ``validated_data["form"]`` is the valid form."""

    form_class: ClassVar[type[forms.BaseForm]]

    def make_form(self, data: dict[str, Any], attrs: Mapping[str, Any]) -> forms.BaseForm:
        """Bind the form (a subclass may pass more, e.g. the node a create is for)."""
        return self.form_class(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        names = set(self.form_class.base_fields)
        form = self.make_form({k: v for k, v in attrs.items() if k in names}, attrs)
        if not form.is_valid():
            raise errors_of(form)
        return {**{k: v for k, v in attrs.items() if k not in names}, "form": form}


class ServiceFormSerializer(FormSerializer):
    """For a service that binds and checks the form itself, inside its audit record
    (so a refusal is audited): only the body's form fields are picked, as ``data``."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        names = set(self.form_class.base_fields)
        picked = {k: v for k, v in attrs.items() if k in names}
        return {**{k: v for k, v in attrs.items() if k not in names}, "data": picked}


def form_serializer(
    name: str,
    form_class: type[forms.BaseForm],
    *,
    extra: Mapping[str, serializers.Field] | None = None,
    exclude: Iterable[str] = (),
    base: type[FormSerializer] = FormSerializer,
) -> type[FormSerializer]:
    """A serializer class named ``name``: ``extra`` fields first, then the form's."""
    skip = set(exclude)
    declared: dict[str, Any] = dict(extra or {})
    declared |= {n: mirror(f) for n, f in form_class.base_fields.items() if n not in skip}
    declared["form_class"] = form_class
    declared["__doc__"] = form_class.__doc__
    declared["__module__"] = base.__module__
    return type(name, (base,), declared)
