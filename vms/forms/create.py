"""The create-VM form: the one schema for the page, ``createvm`` and the API.

It offers what the chosen node's stored facts list and holds every rule a create
input must pass: the name (and that no VM or create job has it), the sizes (a
flavor fills what is left empty; never more than the node has), pool, ISO and
volume references (only ones the facts list, never a path), network or bridge,
OS variant and VNC port. Nothing here reaches the node: the job re-checks live.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.core.exceptions import ValidationError

from jobs.choices import JobStatus
from jobs.models import Job
from kvmmgr.inputs.fields import Choice, WholeNumber
from nodes.hypervisor import HypervisorError, virtinstall
from nodes.hypervisor.virtinstall import MEDIA_IMPORT, MEDIA_ISO, MEDIA_PXE
from nodes.models import Node
from nodes.validators import validate_name
from vms.flavors import FLAVORS
from vms.jobkinds import lock_key_for
from vms.models import VirtualMachine
from vms.services.create import (
    DISK_FORMATS,
    GIB,
    VNC_PORT_MAX,
    VNC_PORT_MIN,
    VOLUME_NAME_RE,
    NodeOptions,
    default_os_variant,
    node_problem,
)

MEDIA_LABELS = [
    (MEDIA_ISO, "Install from an ISO image in a storage pool"),
    (MEDIA_IMPORT, "Import an existing disk volume"),
    (MEDIA_PXE, "Network (PXE) boot"),
]
SIZES = (("vcpus", "vCPUs"), ("memory_mib", "Memory (MiB)"), ("disk_gib", "Disk size (GiB)"))


def _size(nbytes: Any) -> str:
    return f"{int(nbytes or 0) / 1024**3:.1f} GiB"


def _mtu_note(nic_mtu: int | None) -> str:
    return f" (MTU {nic_mtu}: the NIC gets mtu.size={nic_mtu})" if nic_mtu else ""


def _size_field(noun: str, **kwargs: Any) -> WholeNumber:
    return WholeNumber(
        noun=noun,
        label=noun,
        low=1,
        invalid="{noun} must be a whole number, not {short!r}.",
        out_of_range="{noun} must be at least 1 (got {value}).",
        **kwargs,
    )


class CreateVMForm(forms.Form):
    """Text where the page offers a list (pool, ISO, volume, network): the CLI and the
    API name them freely, and the rules below explain a wrong one in the same words."""

    cli_aliases: ClassVar[dict[str, str]] = {"memory_mib": "--memory", "disk_gib": "--disk-size"}

    name = forms.CharField(
        help_text="Letters, digits, '.', '_' or '-'.",
        # The same words as any other bad name (``validate_name``).
        error_messages={
            "required": "VM name '' is not allowed: use 1–63 letters, digits, '.', '_' or "
            "'-', starting with a letter or digit."
        },
    )
    flavor = Choice(
        choices=[("", "custom (type the sizes)")] + [(f.name, f.label) for f in FLAVORS.values()],
        default="",
        normalize=None,
        message="Unknown flavor {value!r}; choose one of {choices}.",
        help_text="sizes for what is left empty",
    )
    vcpus = _size_field("vCPUs")
    memory_mib = _size_field("Memory (MiB)")
    disk_gib = _size_field("Disk size (GiB)", help_text="For a new disk (ISO or PXE install).")
    disk_format = Choice(
        choices=[(f, f) for f in DISK_FORMATS],
        default="qcow2",
        normalize=None,
        message="Disk format must be one of {choices}.",
    )
    pool = forms.CharField(
        label="Storage pool for the new disk",
        required=False,
        widget=forms.Select,
        help_text="default: the pool named 'default'",
    )
    media = Choice(
        label="Install media",
        choices=MEDIA_LABELS,
        default="",
        normalize=None,
        widget=forms.RadioSelect,
        initial=MEDIA_ISO,
        message="Choose the install media: an ISO, an existing volume or PXE.",
        help_text="default: iso with an ISO, import with an import volume",
    )
    iso = forms.CharField(
        label="ISO image", required=False, widget=forms.Select, help_text="[POOL/]VOLUME"
    )
    import_volume = forms.CharField(
        label="Existing volume (import)",
        required=False,
        widget=forms.Select,
        help_text="[POOL/]VOLUME",
    )
    network = forms.CharField(
        required=False,
        widget=forms.Select,
        help_text="A network or bridge whose MTU is below 1500 (e.g. one carrying a bridged "
        "VPN overlay, 1400) gives the NIC that MTU (<mtu size=…/>): a virtio guest takes it "
        "as its own and sends no frames the link would drop.",
    )
    bridge = forms.CharField(
        required=False, widget=forms.HiddenInput, help_text="a host bridge on the node"
    )
    os_variant = forms.CharField(
        label="OS variant",
        required=False,
        help_text="An id from `virt-install --osinfo list`, e.g. debian11, linux2022, generic.",
    )
    vnc_port = WholeNumber(
        noun="VNC port",
        label="VNC port",
        low=VNC_PORT_MIN,
        high=VNC_PORT_MAX,
        invalid="VNC port must be a number, not {short!r}.",
        out_of_range="VNC port must be from {low} to {high}.",
        help_text="Empty: the node picks a free port. Otherwise 5900–65535, not in use.",
    )

    def __init__(self, node: Node, data: Any = None, **kwargs: Any) -> None:
        if data is not None:
            data = {k: v for k, v in data.items() if v is not None}
        super().__init__(data, **kwargs)
        self.node = node
        self.opts = NodeOptions.of(node)
        self._offer(self.opts)

    def _offer(self, opts: NodeOptions) -> None:
        """The page's lists, from the node's stored facts."""
        fields = self.fields
        fields["pool"].widget.choices = [
            (p["name"], f"{p['name']} ({_size(p.get('available_bytes'))} free)") for p in opts.pools
        ]
        if opts.pool("default"):
            fields["pool"].initial = "default"
        fields["iso"].widget.choices = [("", "—")] + [
            (f"{v['pool']}/{v['name']}", f"{v['pool']}/{v['name']}") for v in opts.isos
        ]
        fields["import_volume"].widget.choices = [("", "—")] + [
            (f"{v['pool']}/{v['name']}", f"{v['pool']}/{v['name']} ({_size(v['capacity_bytes'])})")
            for v in opts.volumes
        ]
        fields["network"].widget.choices = (
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
        if not self.is_bound:
            fields["os_variant"].initial = default_os_variant()

    # --- one field at a time ----------------------------------------------------------

    def clean_name(self) -> str:
        name: str = self.cleaned_data.get("name") or ""
        try:
            validate_name(name, what="VM name")
        except ValidationError as exc:
            raise ValidationError(exc.messages[0]) from None
        present = VirtualMachine.objects.present().select_related("node")
        clash = present.filter(name__iexact=name).first()
        if clash is not None:
            raise ValidationError(
                f"A VM named {clash.name!r} already exists on node {clash.node.name}."
            )
        active = Job.objects.filter(
            lock_key=lock_key_for(None, name), status__in=JobStatus.active()
        ).first()
        if active is not None:
            raise ValidationError(f"VM {name!r} is already being created (job #{active.pk}).")
        return name

    def clean_os_variant(self) -> str:
        variant = (self.cleaned_data.get("os_variant") or "").strip() or default_os_variant()
        try:
            known = virtinstall.os_variants()
        except HypervisorError as exc:
            raise ValidationError(exc.message) from None
        if variant not in known:
            raise ValidationError(
                f"Unknown OS variant {variant[:40]!r}; see `virt-install --osinfo list` "
                "(e.g. linux2022, debian11, generic)."
            )
        return variant

    def clean_vnc_port(self) -> int | None:
        port: int | None = self.cleaned_data.get("vnc_port")
        if port is None:
            return None
        used = VirtualMachine.objects.present().filter(node=self.node, vnc_port=port).first()
        if used is not None:
            raise ValidationError(f"VNC port {port} is in use by {used.name} on {self.node.name}.")
        return port

    # --- what depends on several fields and on the node's facts -------------------------

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        self._fill_sizes(data)
        if node_problem(self.node):
            return data  # ``job_params`` names the node's problem; its facts are no guide
        media = data.get("media") or self._media_implied(data)
        if media == "":
            self.add_error("media", self.fields["media"].message)
        data["media"] = media
        limits = {"vcpus": self.opts.cpus, "memory_mib": self.opts.memory_free_mib}
        for name, noun in SIZES:
            if name in limits and data.get(name) is not None:
                self._size_limit(name, noun, data[name], limits[name])
        params: dict[str, Any] = {"media": media, "flavor": data.get("flavor") or ""}
        if media == MEDIA_IMPORT:
            pool, volume = self._volume_ref(
                "import_volume", data.get("pool") or "default", self.opts.volumes
            )
            params |= {"import_pool": pool, "import_volume": volume, "pool": pool, "disk_gib": 0}
        elif media in (MEDIA_ISO, MEDIA_PXE):
            params |= self._new_disk(data)
            if media == MEDIA_ISO:
                pool, volume = self._volume_ref("iso", "", self.opts.isos)
                params |= {"iso_pool": pool, "iso_volume": volume}
        params |= self._network(media)
        data["params"] = params
        return data

    def _media_implied(self, data: dict[str, Any]) -> str:
        """No media named: an ISO or an import volume given says which (the CLI's way)."""
        if self._raw("iso"):
            return MEDIA_ISO
        return MEDIA_IMPORT if self._raw("import_volume") else ""

    def _raw(self, name: str) -> str:
        return str(self.data.get(name) or "").strip()

    def _fill_sizes(self, data: dict[str, Any]) -> None:
        """A flavor fills the sizes left empty; vCPUs and memory are needed either way."""
        flavor = FLAVORS.get(data.get("flavor") or "")
        for name, noun in SIZES:
            if name not in data:
                continue  # already refused
            if data[name] is None and flavor is not None:
                data[name] = getattr(flavor, name)
            if data[name] is None and name != "disk_gib":  # a disk only for a new one
                self.add_error(name, f"{noun} is required (or choose a flavor).")

    def _size_limit(self, name: str, noun: str, value: int | None, limit: int | None) -> int:
        if value is None:
            self.add_error(name, f"{noun} is required (or choose a flavor).")
            return 0
        if limit is not None and value > limit:
            self.add_error(name, f"{noun} {value} is more than the node has ({limit}).")
            return 0
        return value

    def _new_disk(self, data: dict[str, Any]) -> dict[str, Any]:
        opts, disk_format = self.opts, data.get("disk_format")
        pool_name = data.get("pool") or ("default" if opts.pool("default") else "")
        pool = opts.pool(pool_name) if pool_name else None
        available_gib = None
        if pool is None:
            self.add_error(
                "pool", f"Storage pool {pool_name!r} is not an active pool on this node."
            )
        else:
            available_gib = int(pool.get("available_bytes", 0)) // GIB
        size = 0
        if "disk_gib" in data:
            size = self._size_limit("disk_gib", "Disk size (GiB)", data["disk_gib"], available_gib)
        name = data.get("name")
        if pool is not None and name and disk_format in DISK_FORMATS:
            volume = f"{name}.{virtinstall.VOLUME_EXTENSIONS[disk_format]}"
            if opts.pool_has(pool_name, volume) and "name" in data:
                self.add_error("name", f"Pool {pool_name!r} already has a volume {volume!r}.")
        return {"pool": pool_name, "disk_gib": size, "disk_format": disk_format}

    def _volume_ref(
        self, field: str, default_pool: str, candidates: list[dict[str, Any]]
    ) -> tuple[str, str]:
        """Accept only a volume the node's facts list (never a path)."""
        value = self.cleaned_data.get(field) or ""
        pool, sep, volume = value.strip().rpartition("/")
        pool = pool if sep else default_pool
        listed = {(v["pool"], v["name"]) for v in candidates}
        if not pool:
            # No pool named: accept a volume name that exactly one pool lists.
            pools = [p for p, n in listed if n == volume]
            pool = pools[0] if len(pools) == 1 else ""
        if not value.strip():
            self.add_error(field, "Choose a volume.")
        elif not VOLUME_NAME_RE.fullmatch(volume) or ".." in value or (pool, volume) not in listed:
            where = f"pool {pool!r}" if pool else "the node's pools"
            self.add_error(field, f"{value!r} is not a volume in {where}; pick one the node lists.")
        else:
            return pool, volume
        return "", ""

    def _network(self, media: str) -> dict[str, Any]:
        """``network`` is a network's name, or the page's ``network:NAME``/``bridge:NAME``."""
        network = str(self.cleaned_data.get("network") or "").strip()
        bridge = str(self.cleaned_data.get("bridge") or "").strip()
        kind, sep, target = network.partition(":")
        if sep and kind in ("network", "bridge") and not bridge:
            network, bridge = (target, "") if kind == "network" else ("", target)
        opts = self.opts
        if network and bridge:
            self.add_error("network", "Choose a libvirt network or a bridge, not both.")
        elif network and network not in opts.networks:
            self.add_error("network", f"Network {network!r} is not an active network on this node.")
        elif bridge and bridge not in opts.bridges:
            self.add_error("network", f"Bridge {bridge!r} is not a bridge on this node.")
        elif media == MEDIA_PXE and not (network or bridge):
            self.add_error("network", "PXE boot needs a network or a bridge.")
        return {"network": network, "bridge": bridge}

    # --- the result -------------------------------------------------------------------

    def job_params(self) -> dict[str, Any]:
        """The create job's params; raises ``ValidationError`` per field (``node`` too)."""
        problem = node_problem(self.node)
        valid = self.is_valid()
        errors: dict[str, Any] = {"node": [problem]} if problem else {}
        if not valid:
            errors |= self.errors.as_data()
        if errors:
            raise ValidationError(errors)
        data = self.cleaned_data
        return {
            "name": data["name"],
            "vcpus": data["vcpus"],
            "memory_mib": data["memory_mib"],
            **data["params"],
            "os_variant": data["os_variant"],
            "vnc_port": data["vnc_port"],
        }


def create_form(node: Node, **values: Any) -> CreateVMForm:
    """A form bound to keyword values, for scripts and tests (``None`` means not given)."""
    return CreateVMForm(node, values)
