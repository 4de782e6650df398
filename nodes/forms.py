"""A node's input: the one schema for the node pages, ``addnode``/``editnode``/
``maintenance`` and the API. The model's validators (``nodes/validators.py``) stay on
the model; ``NodeForm`` runs them (a ModelForm cleans its instance)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from django import forms
from django.core.exceptions import ValidationError
from django.forms.models import model_to_dict

from kvmmgr.inputs.fields import Choice, Flag, WholeNumber, truthy, unchecked_means_no
from nodes.models import Node, VirtType

FIELDS = ["name", "uri", "migration_address", "migration_ssh_port", "virt_type", "enabled"]
PORT_TEXT = "Migration ssh port must be a port number, 1–65535 (got {value!r})."


class NodeForm(forms.ModelForm):
    """A node's two paths (the manager's URI, the peers' migration address and port),
    its virtualization and whether it is polled."""

    migration_ssh_port = WholeNumber(
        noun="Migration ssh port",
        label="Migration ssh port",
        low=1,
        high=65535,
        invalid=PORT_TEXT,
        out_of_range=PORT_TEXT,
        help_text=Node._meta.get_field("migration_ssh_port").help_text,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "placeholder": "22"}),
    )
    virt_type = Choice(
        label="Virtualization",
        choices=VirtType.choices,
        default=VirtType.AUTO,
        message="Virtualization must be one of {choices} (got {value!r}).",
        help_text=Node._meta.get_field("virt_type").help_text,
    )
    enabled = Flag(default=True, label="Enabled (polled; offered for VMs and migrations)")

    #: ``editnode NAME --rename NEW``: the positional names the node to change.
    cli_aliases: ClassVar[dict[str, str]] = {"name": "--rename"}

    class Meta:
        model = Node
        fields = FIELDS
        widgets = {
            "uri": forms.TextInput(attrs={"placeholder": "qemu+ssh://root@host.example/system"}),
            "migration_address": forms.TextInput(
                attrs={"placeholder": "defaults to the URI's host"}
            ),
        }
        help_texts = {
            "name": "Letters, digits, '.', '_' or '-'.",
            "uri": "qemu+ssh://user@host[:port]/system, qemu:///system or test:///…",
        }

    @classmethod
    def for_change(cls, node: Node, changes: Mapping[str, Any]) -> NodeForm:
        """Bound to ``node``'s current values with ``changes`` over them (an edit that
        names only what changes: ``editnode``, the API's PATCH), on a copy of the row
        so a refusal leaves ``node`` as it was."""
        current = model_to_dict(node, fields=FIELDS)
        return cls({**current, **changes}, instance=Node.objects.get(pk=node.pk))

    @classmethod
    def from_page(cls, post: Any, node: Node | None = None) -> NodeForm:
        """The page's POST: an unchecked box sends nothing, which there means no."""
        data = unchecked_means_no(cls, post)
        instance = Node.objects.get(pk=node.pk) if node is not None else None
        return cls(data, instance=instance)


class OnOff(forms.Field):
    """Yes or no, said explicitly: JSON true/false, or on/off, yes/no, 1/0, true/false."""

    FALSE_WORDS = frozenset({"0", "false", "off", "no"})
    api_kind = "bool"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("error_messages", {"required": "true or false."})
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> bool | None:
        if isinstance(value, bool) or value in self.empty_values:
            return value if isinstance(value, bool) else None
        text = str(value).strip().lower()
        if truthy(text):
            return True
        if text in self.FALSE_WORDS:
            return False
        raise ValidationError("true or false.", code="invalid")

    def validate(self, value: Any) -> None:
        if value is None:
            raise ValidationError(self.error_messages["required"], code="required")


class MaintenanceForm(forms.Form):
    """Start (``on``) or end a node's maintenance, with the reason shown where it is listed."""

    on = OnOff(label="In maintenance", help_text="true: start maintenance; false: end it")
    reason = forms.CharField(
        required=False,
        max_length=200,
        error_messages={"max_length": "At most 200 characters."},
        widget=forms.TextInput(attrs={"placeholder": "kernel upgrade"}),
        help_text="shown wherever the node is listed",
    )

    def values(self) -> tuple[bool, str]:
        """``(on, reason)``; raises ``ValidationError`` per field when not valid."""
        if not self.is_valid():
            raise ValidationError(self.errors.as_data())
        return bool(self.cleaned_data["on"]), str(self.cleaned_data["reason"])
