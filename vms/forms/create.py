"""The create-VM form: offers only what the chosen node's stored facts list."""

from __future__ import annotations

from typing import Any

from django import forms

from nodes.hypervisor.virtinstall import MEDIA_IMPORT, MEDIA_ISO, MEDIA_PXE
from nodes.models import Node
from vms.flavors import FLAVORS
from vms.services.create import DISK_FORMATS, CreateRequest, NodeOptions, default_os_variant

MEDIA_LABELS = [
    (MEDIA_ISO, "Install from an ISO image in a storage pool"),
    (MEDIA_IMPORT, "Import an existing disk volume"),
    (MEDIA_PXE, "Network (PXE) boot"),
]


def _size(nbytes: Any) -> str:
    return f"{int(nbytes or 0) / 1024**3:.1f} GiB"


def _mtu_note(nic_mtu: int | None) -> str:
    return f" (MTU {nic_mtu}: the NIC gets mtu.size={nic_mtu})" if nic_mtu else ""


class CreateVMForm(forms.Form):
    """Numbers are plain text fields: the service checks them against the node and
    explains what is wrong (zero, negative, not a number, more than the node has)."""

    name = forms.CharField(max_length=80, help_text="Letters, digits, '.', '_' or '-'.")
    flavor = forms.ChoiceField(required=False)
    vcpus = forms.CharField(label="vCPUs", required=False, widget=forms.NumberInput)
    memory_mib = forms.CharField(label="Memory (MiB)", required=False, widget=forms.NumberInput)
    disk_gib = forms.CharField(
        label="Disk size (GiB)",
        required=False,
        widget=forms.NumberInput,
        help_text="For a new disk (ISO or PXE install).",
    )
    disk_format = forms.ChoiceField(choices=[(f, f) for f in DISK_FORMATS], initial="qcow2")
    pool = forms.ChoiceField(label="Storage pool for the new disk", required=False)
    media = forms.ChoiceField(
        label="Install media", choices=MEDIA_LABELS, widget=forms.RadioSelect, initial=MEDIA_ISO
    )
    iso = forms.ChoiceField(label="ISO image", required=False)
    import_volume = forms.ChoiceField(label="Existing volume (import)", required=False)
    network = forms.ChoiceField(
        required=False,
        help_text="A network or bridge whose MTU is below 1500 (e.g. one carrying a bridged "
        "VPN overlay, 1400) gives the NIC that MTU (<mtu size=…/>): a virtio guest takes it "
        "as its own and sends no frames the link would drop.",
    )
    os_variant = forms.CharField(
        label="OS variant",
        required=False,
        max_length=64,
        help_text="An id from `virt-install --osinfo list`, e.g. debian11, linux2022, generic.",
    )
    vnc_port = forms.CharField(
        label="VNC port",
        required=False,
        widget=forms.NumberInput,
        help_text="Empty: the node picks a free port. Otherwise 5900–65535, not in use.",
    )

    def __init__(self, node: Node, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.node = node
        opts = NodeOptions.of(node)
        self.fields["flavor"].choices = [("", "custom (type the sizes)")] + [
            (f.name, f.label) for f in FLAVORS.values()
        ]
        self.fields["pool"].choices = [
            (p["name"], f"{p['name']} ({_size(p.get('available_bytes'))} free)") for p in opts.pools
        ]
        if opts.pool("default"):
            self.fields["pool"].initial = "default"
        self.fields["iso"].choices = [("", "—")] + [
            (f"{v['pool']}/{v['name']}", f"{v['pool']}/{v['name']}") for v in opts.isos
        ]
        self.fields["import_volume"].choices = [("", "—")] + [
            (f"{v['pool']}/{v['name']}", f"{v['pool']}/{v['name']} ({_size(v['capacity_bytes'])})")
            for v in opts.volumes
        ]
        self.fields["network"].choices = (
            [("", "no network")]
            + [
                (f"network:{n}", f"libvirt network {n}{_mtu_note(opts.nic_mtu(network=n))}")
                for n in opts.networks
            ]
            + [
                (f"bridge:{b}", f"bridge {b}{_mtu_note(opts.nic_mtu(bridge=b))}")
                for b in opts.bridges
            ]
        )
        self.fields["os_variant"].initial = default_os_variant()

    def to_request(self) -> CreateRequest:
        data = self.cleaned_data
        kind, _, target = (data.get("network") or "").partition(":")
        return CreateRequest(
            node=self.node,
            name=data["name"].strip(),
            vcpus=data.get("vcpus"),
            memory_mib=data.get("memory_mib"),
            disk_gib=data.get("disk_gib") if data["media"] != MEDIA_IMPORT else None,
            disk_format=data.get("disk_format") or "qcow2",
            pool=data.get("pool") or "",
            media=data["media"],
            iso=data.get("iso") or "",
            import_volume=data.get("import_volume") or "",
            network=target if kind == "network" else "",
            bridge=target if kind == "bridge" else "",
            os_variant=data.get("os_variant") or "",
            vnc_port=data.get("vnc_port"),
            flavor=data.get("flavor") or "",
        )
