"""Starting, stopping, rebooting and undefining one domain, looked up by UUID.

Every function takes the node URI, the domain's UUID and its name (for messages
only: names can be reused, UUIDs cannot) and raises ``HypervisorError`` with a
message naming the VM. Nothing here touches the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import libvirt

from nodes.hypervisor.connection import connection_for, translate_error
from nodes.hypervisor.errors import HypervisorError
from nodes.hypervisor.states import VMState, state_from_libvirt
from nodes.hypervisor.xml import DomainDevices, parse_domain_devices, vnc_graphics_with_password

# A running migration or other domain job is aborted before a destroy: destroying
# a domain whose migration was cancelled mid-copy crashed libvirtd 9.0 once.
_JOB_ABORT_WAIT = 10.0


class _DomainError(HypervisorError):
    """Already names the VM; not wrapped a second time."""


@contextmanager
def _domain(uri: str, uuid: str, name: str, action: str) -> Iterator[libvirt.virDomain]:
    """The domain with ``uuid``; any failure becomes "could not ACTION VM NAME: why"."""
    try:
        with connection_for(uri) as conn:
            try:
                dom = conn.lookupByUUIDString(uuid)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    raise _DomainError(
                        f"could not {action} VM {name}: it is no longer defined on {uri} "
                        f"(UUID {uuid}); the inventory will catch up on its next refresh.",
                        uri=uri,
                    ) from exc
                raise
            yield dom
    except _DomainError:
        raise
    except libvirt.libvirtError as exc:  # raised outside connection_for's block
        error = translate_error(exc, uri)
        raise _DomainError(
            f"could not {action} VM {name}: {error.message}", retryable=error.retryable, uri=uri
        ) from exc
    except HypervisorError as exc:
        raise _DomainError(
            f"could not {action} VM {name}: {exc.message}", retryable=exc.retryable, uri=uri
        ) from exc


def _state(dom: libvirt.virDomain) -> VMState:
    code, _reason = dom.state()
    return state_from_libvirt(code)


def domain_state(uri: str, uuid: str, name: str) -> VMState:
    """The domain's current state, read live."""
    with _domain(uri, uuid, name, "read the state of") as dom:
        return _state(dom)


def domain_devices(uri: str, uuid: str, name: str) -> DomainDevices:
    """Disks, NICs and consoles of the domain's persistent definition."""
    with _domain(uri, uuid, name, "read the definition of") as dom:
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE if dom.isPersistent() else 0
        return parse_domain_devices(dom.XMLDesc(flags))


def start_domain(uri: str, uuid: str, name: str) -> None:
    with _domain(uri, uuid, name, "start") as dom:
        if dom.isActive():
            raise _DomainError(f"could not start VM {name}: it is already running.", uri=uri)
        dom.create()


def _acpi_or_default(call: Callable[[int], int], acpi_flag: int) -> None:
    """Ask with the ACPI power button; a driver without that mode uses its default."""
    try:
        call(acpi_flag)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
            raise
        call(0)


def shutdown_domain(
    uri: str,
    uuid: str,
    name: str,
    *,
    timeout: float,
    poll: float = 0.5,
    on_wait: Callable[[float], None] | None = None,
) -> float:
    """Press the ACPI power button, then wait until the domain is shut off.

    Returns the seconds it took. ``on_wait(elapsed)`` is called on every poll
    (progress, abort checks). A guest that ignores ACPI (no acpid, hung, paused)
    makes this raise after ``timeout`` seconds, leaving the domain running.
    """
    with _domain(uri, uuid, name, "shut down") as dom:
        if not dom.isActive():
            return 0.0
        started = time.monotonic()
        _acpi_or_default(dom.shutdownFlags, libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
        while True:
            elapsed = time.monotonic() - started
            if not dom.isActive() or _state(dom) == VMState.SHUTOFF:
                return elapsed
            if elapsed >= timeout:
                raise _DomainError(
                    f"VM {name} did not shut down within {timeout:g} s of the ACPI power-button "
                    f"request; it is still {_state(dom).label}. The guest may ignore ACPI "
                    "(no acpid, hung or paused). Force it off instead.",
                    uri=uri,
                )
            if on_wait is not None:
                on_wait(elapsed)
            time.sleep(poll)


def _abort_domain_job(dom: libvirt.virDomain) -> None:
    try:
        job_type = dom.jobInfo()[0]
    except libvirt.libvirtError:
        return  # the driver keeps no job info: nothing to abort
    if job_type == libvirt.VIR_DOMAIN_JOB_NONE:
        return
    dom.abortJob()
    deadline = time.monotonic() + _JOB_ABORT_WAIT
    while time.monotonic() < deadline and dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE:
        time.sleep(0.2)


def destroy_domain(uri: str, uuid: str, name: str) -> bool:
    """Force the domain off (pull the plug). Returns False if it was not running."""
    with _domain(uri, uuid, name, "force off") as dom:
        if not dom.isActive():
            return False
        _abort_domain_job(dom)
        dom.destroy()
        return True


def reboot_domain(uri: str, uuid: str, name: str) -> None:
    """Ask the guest to reboot through ACPI; returns once the request is delivered."""
    with _domain(uri, uuid, name, "reboot") as dom:
        if not dom.isActive():
            raise _DomainError(f"could not reboot VM {name}: it is not running.", uri=uri)
        _acpi_or_default(dom.reboot, libvirt.VIR_DOMAIN_REBOOT_ACPI_POWER_BTN)


def _checkpoint_count(dom: libvirt.virDomain) -> int:
    try:
        return len(dom.listAllCheckpoints(0))
    except libvirt.libvirtError:
        return 0  # driver without checkpoints: there are none to remove


def undefine_domain(uri: str, uuid: str, name: str) -> list[str]:
    """Remove the domain's definition with the metadata libvirt would otherwise refuse over.

    Managed-save image, snapshot and checkpoint metadata and the NVRAM file are
    removed with it (flags only where they exist: some drivers reject flags they
    do not know). Returns the virsh options equivalent to the flags used.
    """
    with _domain(uri, uuid, name, "delete") as dom:
        if dom.isActive():
            raise _DomainError(
                f"could not delete VM {name}: it is running; force it off first.", uri=uri
            )
        flags, options = 0, []
        if dom.hasManagedSaveImage(0):
            flags |= libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            options.append("--managed-save")
        if dom.snapshotNum(0):
            flags |= libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            options.append("--snapshots-metadata")
        if _checkpoint_count(dom):
            flags |= libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
            options.append("--checkpoints-metadata")
        if parse_domain_devices(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).uefi:
            flags |= libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
            options.append("--nvram")
        dom.undefineFlags(flags)
        return options


def set_vnc_password(uri: str, uuid: str, name: str, password: str) -> None:
    """Give the domain's VNC display ``password``, running and persistent.

    libvirt hands it to QEMU over the monitor: it is on no command line. Each
    definition is updated from its own XML (the running one has the allocated port).
    """
    with _domain(uri, uuid, name, "set the VNC password of") as dom:
        targets = [(libvirt.VIR_DOMAIN_XML_INACTIVE, libvirt.VIR_DOMAIN_AFFECT_CONFIG)]
        if dom.isActive():
            targets.append((0, libvirt.VIR_DOMAIN_AFFECT_LIVE))
        for xml_flags, affect in targets:
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE | xml_flags)
            graphics = vnc_graphics_with_password(xml, password)
            if graphics is None:
                raise _DomainError(
                    f"could not set the VNC password of VM {name}: it has no VNC display", uri=uri
                )
            dom.updateDeviceFlags(graphics, affect)
