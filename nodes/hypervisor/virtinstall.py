"""Creating a domain with virt-install, and removing what a failed create left.

virt-install runs on the manager with ``--connect`` to the node (through our ssh
wrapper, so it gets the same timeouts and pinned host keys as libvirt itself),
always as an argument list and with a bounded run time. Everything that reaches
its command line was validated by the create service first.

The VNC password never appears on a command line (``ps`` shows those to every
local user): virt-install gets a random one-time password that has already
expired (``passwordValidTo`` in the past, so QEMU starts with password
authentication and nobody can log in), and the job then sets the real one
through the libvirt API (:func:`nodes.hypervisor.lifecycle.set_vnc_password`).
libvirt's test driver has no VNC server and cannot change graphics, so its
domains get the password at define time. Passwords are masked in every string
that leaves this module (logged command, errors).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

import libvirt

from nodes.hypervisor.bound import run_bound
from nodes.hypervisor.connection import connection_for, libvirt_uri_for
from nodes.hypervisor.errors import HypervisorError
from nodes.validators import parse_node_uri

#: A qcow2 create plus define and start takes ~2 s; a large raw disk can take minutes.
VIRT_INSTALL_TIMEOUT = 600.0
OSINFO_TIMEOUT = 30.0
MASK = "********"

MEDIA_ISO = "iso"
MEDIA_IMPORT = "import"
MEDIA_PXE = "pxe"
MEDIA_CHOICES = (MEDIA_ISO, MEDIA_IMPORT, MEDIA_PXE)
#: virt-install names a new volume NAME.<ext> by format.
VOLUME_EXTENSIONS = {"qcow2": "qcow2", "raw": "img"}


@dataclass(frozen=True)
class CreateSpec:
    """One validated create request, in the terms virt-install uses."""

    name: str
    uuid: str
    virt_type: str
    vcpus: int
    memory_mib: int
    os_variant: str
    media: str
    disk_pool: str = ""
    disk_gib: int = 0
    disk_format: str = "qcow2"
    iso_path: str = ""
    import_volume: str = ""  # "pool/volume"
    network: str = ""
    bridge: str = ""
    #: The NIC's MTU when its network or bridge has a lower one than 1500 (else None):
    #: a virtio guest takes it as its own, so it never sends frames the link drops.
    nic_mtu: int | None = None
    vnc_listen: str = "127.0.0.1"
    vnc_port: int | None = None
    vnc_password: str = ""
    #: What virt-install's command line carries instead (expired at start).
    vnc_start_password: str = ""

    @property
    def sets_password_later(self) -> bool:
        """True where the real password is set through libvirt after the create."""
        return bool(self.vnc_password) and self.virt_type != "test"

    @property
    def new_volume_name(self) -> str:
        """The volume virt-install creates for a new disk (empty for --import)."""
        if self.media == MEDIA_IMPORT:
            return ""
        return f"{self.name}.{VOLUME_EXTENSIONS[self.disk_format]}"


def virt_install_path() -> str:
    path = shutil.which("virt-install")
    if path is None:
        raise HypervisorError(
            "virt-install is not installed on the manager (Debian: apt install virtinst)."
        )
    return path


@functools.cache
def os_variants() -> frozenset[str]:
    """OS variant ids virt-install accepts here (``virt-install --osinfo list``)."""
    try:
        proc = subprocess.run(
            [virt_install_path(), "--osinfo", "list"],
            capture_output=True,
            text=True,
            timeout=OSINFO_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HypervisorError(f"cannot list OS variants: {exc}") from exc
    if proc.returncode != 0:
        raise HypervisorError(f"cannot list OS variants: {proc.stderr.strip()}")
    variants = set()
    for line in proc.stdout.splitlines():
        # Lines look like "debian12" or "linux2022, alias1, alias2".
        variants.update(part.strip() for part in line.split(",") if part.strip())
    return frozenset(variants)


def virt_type_for(uri: str, wanted: str) -> str:
    """The domain type to ask for: libvirt's test driver only knows ``test``."""
    return "test" if parse_node_uri(uri, resolve=False).scheme == "test" else wanted


def build_argv(spec: CreateSpec, connect_uri: str) -> list[str]:
    """virt-install's argument list for ``spec`` (the program itself first)."""
    argv = [
        "virt-install",
        "--connect",
        connect_uri,
        "--name",
        spec.name,
        "--uuid",
        spec.uuid,
        "--virt-type",
        spec.virt_type,
        "--vcpus",
        str(spec.vcpus),
        "--memory",
        str(spec.memory_mib),
        "--osinfo",
        spec.os_variant,
    ]
    if spec.media == MEDIA_IMPORT:
        argv += ["--import", "--disk", f"vol={spec.import_volume},bus=virtio"]
    else:
        argv += [
            "--disk",
            f"pool={spec.disk_pool},size={spec.disk_gib},format={spec.disk_format},bus=virtio",
        ]
        if spec.media == MEDIA_ISO:
            argv += ["--cdrom", spec.iso_path]
        elif spec.media == MEDIA_PXE:
            argv += ["--pxe"]
        else:
            raise ValueError(f"unknown install media {spec.media!r}")
    if spec.network or spec.bridge:
        nic = f"network={spec.network}" if spec.network else f"bridge={spec.bridge}"
        nic += ",model=virtio"
        if spec.nic_mtu is not None:
            nic += f",mtu.size={spec.nic_mtu}"
        argv += ["--network", nic]
    else:
        argv += ["--network", "none"]
    graphics = f"vnc,listen={spec.vnc_listen}"
    if spec.vnc_port is not None:
        graphics += f",port={spec.vnc_port}"
    if spec.sets_password_later:
        graphics += f",password={spec.vnc_start_password},passwordValidTo={EXPIRED}"
    elif spec.vnc_password:
        graphics += f",password={spec.vnc_password}"
    # --noautoconsole: return once the domain is defined and started, never wait on a console.
    argv += ["--graphics", graphics, "--noautoconsole"]
    return argv


#: passwordValidTo for the start password: long past, so it never opens the display.
EXPIRED = "2000-01-01T00:00:00"


def mask(text: str, *secrets: str) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def masked_argv(argv: Sequence[str], *secrets: str) -> list[str]:
    """The argument list with the VNC passwords replaced, for logs and the job's command."""
    return [mask(arg, *secrets) for arg in argv]


def run_virt_install(
    spec: CreateSpec, node_uri: str, *, timeout: float = VIRT_INSTALL_TIMEOUT
) -> str:
    """Run virt-install for ``spec`` against the node; return its (masked) output.

    Raises ``HypervisorError`` with virt-install's own error text on failure or timeout.
    """
    argv = build_argv(spec, libvirt_uri_for(node_uri))
    argv[0] = virt_install_path()
    env = {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    try:
        proc = run_bound(argv, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise HypervisorError(
            f"{node_uri}: virt-install did not finish within {timeout:g} s and was stopped.",
            retryable=True,
            uri=node_uri,
        ) from exc
    except OSError as exc:
        raise HypervisorError(f"cannot run virt-install: {exc}") from exc
    output = mask((proc.stdout + proc.stderr).strip(), spec.vnc_password, spec.vnc_start_password)
    if proc.returncode != 0:
        detail = _error_lines(output) or f"exit status {proc.returncode}"
        raise HypervisorError(f"{node_uri}: virt-install failed: {detail}", uri=node_uri)
    return output


def _error_lines(output: str) -> str:
    """virt-install's ERROR lines (its own summary), else the last lines of output."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return " ".join(errors or lines[-3:])


def domain_exists(uri: str, *, name: str = "", uuid: str = "") -> bool:
    """Whether the node has a domain with this name or UUID (running or defined)."""
    with connection_for(uri) as conn:
        for lookup, value in ((conn.lookupByName, name), (conn.lookupByUUIDString, uuid)):
            if not value:
                continue
            try:
                lookup(value)
                return True
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
        return False


def remove_domain(uri: str, uuid: str) -> bool:
    """Stop and undefine a domain a failed create left; False if there was none."""
    with connection_for(uri) as conn:
        try:
            dom = conn.lookupByUUIDString(uuid)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise
        if dom.isActive() == 1:
            dom.destroy()
        if dom.isPersistent() == 1:
            try:
                dom.undefineFlags(
                    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                )
            except libvirt.libvirtError as exc:
                # Drivers without NVRAM or snapshots refuse the flags; nothing of that exists.
                if exc.get_error_code() not in (
                    libvirt.VIR_ERR_INVALID_ARG,
                    libvirt.VIR_ERR_NO_SUPPORT,
                ):
                    raise
                dom.undefine()
        return True
