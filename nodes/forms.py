from __future__ import annotations

from django import forms

from nodes.models import Node


class NodeForm(forms.ModelForm):
    class Meta:
        model = Node
        fields = ["name", "uri", "migration_address", "migration_ssh_port", "virt_type", "enabled"]
        widgets = {
            "uri": forms.TextInput(attrs={"placeholder": "qemu+ssh://root@host.example/system"}),
            "migration_address": forms.TextInput(
                attrs={"placeholder": "defaults to the URI's host"}
            ),
            "migration_ssh_port": forms.NumberInput(attrs={"placeholder": "22"}),
        }
