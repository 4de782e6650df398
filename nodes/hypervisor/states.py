"""Translation of libvirt's domain state integers into our named states."""

from __future__ import annotations

import libvirt

from vms.choices import VMState

_STATES: dict[int, VMState] = {
    libvirt.VIR_DOMAIN_NOSTATE: VMState.UNKNOWN,
    libvirt.VIR_DOMAIN_RUNNING: VMState.RUNNING,
    # "blocked on resource" is a running domain waiting for I/O or CPU.
    libvirt.VIR_DOMAIN_BLOCKED: VMState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: VMState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: VMState.SHUTTING_DOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: VMState.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: VMState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: VMState.SUSPENDED,
}


def state_from_libvirt(code: int) -> VMState:
    return _STATES.get(code, VMState.UNKNOWN)
