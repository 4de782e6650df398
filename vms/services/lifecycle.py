"""Start, shut down, force off, reboot and delete a VM, each as a job.

``request_*`` validate against the stored inventory (no hypervisor call: views
and commands call them) and submit a job; ``run_*`` are the job handlers the
runner calls in a worker. Refusals are ``ValidationError`` (nothing is
queued); a second action on a VM with an active job raises ``JobConflict``.
"""

from __future__ import annotations

import shlex
import uuid as uuidlib
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

from django.core.exceptions import ValidationError

from jobs.context import JobContext
from jobs.models import Job
from jobs.runner import submit
from kvmmgr import audit
from kvmmgr.access import Actor, Permission
from nodes.hypervisor import HypervisorError, volumes_delete
from nodes.hypervisor import lifecycle as hv
from nodes.hypervisor.states import VMState
from nodes.hypervisor.xml import DiskDevice
from nodes.models import Node
from nodes.validators import validate_name
from vms.choices import JobKind
from vms.models import VirtualMachine
from vms.services import inventory

DEFAULT_SHUTDOWN_TIMEOUT = 120
MIN_SHUTDOWN_TIMEOUT = 1
MAX_SHUTDOWN_TIMEOUT = 3600


# -- finding a VM (commands take a name or a UUID) -----------------------------


def find_vm(ref: str, *, node: str | None = None) -> VirtualMachine:
    """The present VM named ``ref`` (optionally on ``node``), or with UUID ``ref``."""
    vms = VirtualMachine.objects.select_related("node").present()
    try:
        as_uuid = uuidlib.UUID(ref)
    except ValueError:
        as_uuid = None
    if as_uuid is not None:
        vm = vms.filter(uuid=as_uuid).first()
        if vm is None:
            raise ValidationError(f"No VM with UUID {ref} in the inventory.", code="unknown_vm")
        return vm
    validate_name(ref, what="VM name")
    if node is not None:
        validate_name(node, what="Node name")
        vms = vms.filter(node__name=node)
    matches = list(vms.filter(name=ref)[:3])
    if not matches:
        where = f" on node {node}" if node else ""
        raise ValidationError(
            f"No VM named {ref!r}{where} in the inventory (refresh it with "
            "manage.py refreshnodes --now if it was just created).",
            code="unknown_vm",
        )
    if len(matches) > 1:
        nodes = ", ".join(sorted(vm.node.name for vm in matches))
        raise ValidationError(
            f"Several VMs are named {ref!r} (on {nodes}): give --node or the UUID.",
            code="ambiguous_vm",
        )
    return matches[0]


# -- what may be asked, from the stored state ------------------------------------


def allowed_actions(vm: VirtualMachine) -> set[str]:
    """Actions that make sense for the VM's last observed state (for buttons)."""
    if vm.vanished_at is not None:
        return set()
    actions = {JobKind.DELETE.value}
    if vm.state == VMState.RUNNING:
        actions |= {JobKind.SHUTDOWN.value, JobKind.REBOOT.value}
    if vm.is_active:
        actions.add(JobKind.FORCE_OFF.value)
    elif vm.state in (VMState.SHUTOFF, VMState.CRASHED):
        actions.add(JobKind.START.value)
    return actions


def deletable_disks(vm: VirtualMachine) -> list[dict[str, Any]]:
    """The VM's own disks from the stored summary: the only ones delete may remove."""
    return [d for d in vm.xml_summary.get("disks", []) if d.get("deletable")]


def _check_present_and_node(vm: VirtualMachine, what: str) -> None:
    if vm.vanished_at is not None:
        raise ValidationError(
            f"Cannot {what} {vm.name}: it is no longer on {vm.node.name} "
            "(deleted or migrated away).",
            code="vanished",
        )
    node = vm.node
    if not node.enabled:
        raise ValidationError(
            f"Cannot {what} {vm.name}: node {node.name} is disabled.", code="node_offline"
        )
    if not node.is_online:
        reason = f" ({node.last_error})" if node.last_error else ""
        raise ValidationError(
            f"Cannot {what} {vm.name}: node {node.name} is {node.status_label}{reason}. "
            "Try again once the node answers.",
            code="node_offline",
        )


def _submit(
    kind: str, vm: VirtualMachine, actor: Actor, params: dict[str, Any], done: audit.Outcome
) -> Job:
    done.job = submit(kind, vm=vm, target_name=vm.name, requested_by=actor.name, params=params)
    done.params.update(params)
    return done.job


def _audited(
    actor: Actor, permission: Permission, what: str, vm: VirtualMachine
) -> AbstractContextManager[audit.Outcome]:
    """Role check + audit row for an action on ``vm`` (a context manager)."""
    return audit.action(
        actor,
        permission,
        what,
        target=vm.name,
        params={"node": vm.node.name, "uuid": str(vm.uuid)},
    )


def request_start(vm: VirtualMachine, actor: Actor) -> Job:
    with _audited(actor, Permission.VM_POWER, "vm.start", vm) as done:
        _check_present_and_node(vm, "start")
        if vm.is_active:
            raise ValidationError(f"{vm.name} is already {vm.get_state_display()}.", code="state")
        return _submit(JobKind.START, vm, actor, {}, done)


def clean_timeout(value: object) -> int:
    """Shutdown timeout in whole seconds, within bounds."""
    try:
        seconds = int(str(value).strip())
    except (TypeError, ValueError):
        seconds = None
    if seconds is None or not MIN_SHUTDOWN_TIMEOUT <= seconds <= MAX_SHUTDOWN_TIMEOUT:
        raise ValidationError(
            f"The shutdown timeout must be a whole number of seconds from "
            f"{MIN_SHUTDOWN_TIMEOUT} to {MAX_SHUTDOWN_TIMEOUT} (got {value!r}).",
            code="invalid_timeout",
        )
    return seconds


def request_shutdown(
    vm: VirtualMachine, actor: Actor, *, timeout: object = DEFAULT_SHUTDOWN_TIMEOUT
) -> Job:
    with _audited(actor, Permission.VM_POWER, "vm.shutdown", vm) as done:
        done.params["timeout"] = str(timeout)
        seconds = clean_timeout(timeout)
        _check_present_and_node(vm, "shut down")
        if not vm.is_active:
            raise ValidationError(f"{vm.name} is already {vm.get_state_display()}.", code="state")
        if vm.state in (VMState.PAUSED, VMState.SUSPENDED):
            # libvirt refuses ACPI for a guest that is not executing.
            raise ValidationError(
                f"Cannot shut down {vm.name}: it is {vm.get_state_display()} and cannot react "
                "to the ACPI power button. Resume it first, or force it off.",
                code="state",
            )
        return _submit(JobKind.SHUTDOWN, vm, actor, {"timeout": seconds}, done)


def request_force_off(vm: VirtualMachine, actor: Actor) -> Job:
    with _audited(actor, Permission.VM_POWER, "vm.force_off", vm) as done:
        _check_present_and_node(vm, "force off")
        if not vm.is_active:
            raise ValidationError(f"{vm.name} is already {vm.get_state_display()}.", code="state")
        return _submit(JobKind.FORCE_OFF, vm, actor, {}, done)


def request_reboot(vm: VirtualMachine, actor: Actor) -> Job:
    with _audited(actor, Permission.VM_POWER, "vm.reboot", vm) as done:
        _check_present_and_node(vm, "reboot")
        if vm.state != VMState.RUNNING:
            raise ValidationError(
                f"Cannot reboot {vm.name}: it is {vm.get_state_display()}, not running.",
                code="state",
            )
        return _submit(JobKind.REBOOT, vm, actor, {}, done)


def request_delete(
    vm: VirtualMachine,
    actor: Actor,
    *,
    disks: Iterable[str] = (),
    force_off: bool = False,
) -> Job:
    """Queue a delete; ``disks`` are target names (``vda``) listed as deletable for this VM."""
    disks = list(disks)
    with _audited(actor, Permission.VM_DELETE, "vm.delete", vm) as done:
        done.params.update(disks=disks, force_off=bool(force_off))
        return _submit(JobKind.DELETE, vm, actor, _delete_params(vm, disks, force_off), done)


def _delete_params(vm: VirtualMachine, disks: Iterable[str], force_off: bool) -> dict[str, Any]:
    """The delete job's parameters, from the disks the VM's summary lists as its own.

    Anything else (a path, another VM's disk, a CD-ROM) is refused, so a crafted
    request cannot make the job delete an arbitrary volume.
    """
    _check_present_and_node(vm, "delete")
    own = {d["target"]: d for d in deletable_disks(vm)}
    chosen = list(dict.fromkeys(disks))
    unknown = [t for t in chosen if t not in own]
    if unknown:
        raise ValidationError(
            f"{', '.join(map(repr, unknown))} is not a deletable disk of {vm.name} "
            f"(its disks: {', '.join(own) or 'none'}).",
            code="invalid_disk",
        )
    if vm.is_active and not force_off:
        raise ValidationError(
            f"{vm.name} is {vm.get_state_display()}: shut it down first, or ask to force it "
            "off as part of the delete.",
            code="state",
        )
    params = {
        "force_off": bool(force_off),
        # What the admin saw when choosing: the job refuses if the live VM differs.
        "disks": [
            {
                "target": t,
                "path": own[t]["path"],
                "pool": own[t]["pool"],
                "volume": own[t]["volume"],
            }
            for t in chosen
        ],
    }
    return params


# -- handlers (run by jobs.runner.execute in a worker) ----------------------------


def _vm(ctx: JobContext) -> tuple[VirtualMachine, Node]:
    vm = ctx.job.vm
    if vm is None:
        raise ValidationError("The VM of this job is no longer in the inventory.")
    return vm, vm.node


def _virsh(node: Node, *args: str) -> list[str]:
    """The virsh command an admin would type, with the plain node URI."""
    return ["virsh", "-c", node.uri, *args]


def _refresh(ctx: JobContext, node: Node) -> None:
    ctx.progress(90, phase="refreshing inventory")
    result = inventory.refresh_node(node)
    if result.ok:
        ctx.log(f"inventory of {node.name} refreshed ({result.domains} domains)")
    else:
        # The action itself succeeded; the next periodic refresh will catch up.
        ctx.log(f"warning: inventory refresh of {node.name} failed: {result.error}")


def run_start(ctx: JobContext) -> None:
    vm, node = _vm(ctx)
    ctx.set_command(_virsh(node, "start", vm.name))
    ctx.progress(10, phase="starting")
    if hv.domain_state(node.uri, str(vm.uuid), vm.name) in VMState.active():
        ctx.log(f"{vm.name} is already running; nothing to do")
    else:
        hv.start_domain(node.uri, str(vm.uuid), vm.name)
        ctx.log(f"{vm.name} started on {node.name}")
    _refresh(ctx, node)


def run_shutdown(ctx: JobContext) -> None:
    vm, node = _vm(ctx)
    timeout = float(ctx.params.get("timeout", DEFAULT_SHUTDOWN_TIMEOUT))
    ctx.set_command(_virsh(node, "shutdown", "--mode", "acpi", vm.name))
    ctx.progress(5, phase="ACPI power button pressed", timeout=timeout)

    def waiting(elapsed: float) -> None:
        ctx.check_abort()
        percent = 5 + int(80 * min(elapsed / timeout, 1.0))
        ctx.progress(
            percent, phase="waiting for the guest", elapsed=round(elapsed, 1), timeout=timeout
        )

    try:
        took = hv.shutdown_domain(node.uri, str(vm.uuid), vm.name, timeout=timeout, on_wait=waiting)
    except HypervisorError as exc:
        if "did not shut down within" in exc.message:
            _refresh(ctx, node)
            # The detail page offers "Force off" on this marker.
            ctx.progress(ctx.job.progress, phase="timed out", timed_out=True, timeout=timeout)
            raise HypervisorError(
                f"{exc.message} (web: Force off on the VM page; "
                f"CLI: manage.py stopvm --force {vm.name})",
                uri=exc.uri,
            ) from exc
        raise
    ctx.log(f"{vm.name} is shut off ({took:.1f} s)")
    _refresh(ctx, node)


def run_force_off(ctx: JobContext) -> None:
    vm, node = _vm(ctx)
    ctx.set_command(_virsh(node, "destroy", vm.name))
    ctx.progress(10, phase="forcing off")
    if hv.destroy_domain(node.uri, str(vm.uuid), vm.name):
        ctx.log(f"{vm.name} forced off")
    else:
        ctx.log(f"{vm.name} was not running; nothing to do")
    _refresh(ctx, node)


def run_reboot(ctx: JobContext) -> None:
    vm, node = _vm(ctx)
    ctx.set_command(_virsh(node, "reboot", "--mode", "acpi", vm.name))
    ctx.progress(10, phase="rebooting")
    hv.reboot_domain(node.uri, str(vm.uuid), vm.name)
    ctx.log(f"reboot requested from {vm.name}'s guest (ACPI)")
    _refresh(ctx, node)


def _chosen_disks(ctx: JobContext, vm: VirtualMachine, node: Node) -> list[DiskDevice]:
    """The chosen disks as the node defines them now; refuse if they changed since."""
    wanted = ctx.params.get("disks", [])
    if not wanted:
        return []
    live = {d.target: d for d in hv.domain_devices(node.uri, str(vm.uuid), vm.name).disks}
    chosen = []
    for entry in wanted:
        disk = live.get(entry["target"])
        seen = (entry.get("path", ""), entry.get("pool", ""), entry.get("volume", ""))
        if disk is None or (disk.path, disk.pool, disk.volume) != seen:
            raise ValidationError(
                f"disk {entry['target']} of {vm.name} changed since the delete was requested "
                "(nothing was deleted); look at the VM again and retry."
            )
        chosen.append(disk)
    return chosen


def run_delete(ctx: JobContext) -> None:
    vm, node = _vm(ctx)
    uuid = str(vm.uuid)
    ctx.progress(5, phase="checking")
    # Everything is checked before anything is changed.
    disks = _chosen_disks(ctx, vm, node)
    volumes = volumes_delete.resolve_volumes(node.uri, vm.name, disks)
    users = volumes_delete.volume_users(node.uri, volumes, exclude_uuid=uuid)
    if users:
        busy = "; ".join(f"{path} is used by {', '.join(names)}" for path, names in users.items())
        raise ValidationError(f"not deleting {vm.name}: {busy} (nothing was deleted)")
    state = hv.domain_state(node.uri, uuid, vm.name)
    if state in VMState.active():
        if not ctx.params.get("force_off"):
            raise ValidationError(
                f"{vm.name} is {state.label}: shut it down or ask to force it off "
                "(nothing was deleted)"
            )
        ctx.log(f"$ {shlex.join(_virsh(node, 'destroy', vm.name))}")
        ctx.progress(15, phase="forcing off")
        hv.destroy_domain(node.uri, uuid, vm.name)
        ctx.log(f"{vm.name} forced off")
    ctx.check_abort()
    ctx.progress(30, phase="undefining")
    options = hv.undefine_domain(node.uri, uuid, vm.name)
    ctx.set_command(_virsh(node, "undefine", vm.name, *options))
    ctx.log(f"{vm.name} undefined" + (f" with {' '.join(options)}" if options else ""))
    failed = []
    for index, ref in enumerate(volumes):
        ctx.progress(
            40 + 45 * index // max(len(volumes), 1), phase="deleting disks", disk=ref.target
        )
        ctx.log(f"$ {shlex.join(_virsh(node, 'vol-delete', '--pool', ref.pool, ref.name))}")
        try:
            volumes_delete.delete_volume(node.uri, ref)
        except HypervisorError as exc:
            failed.append(f"{ref.path}: {exc.message}")
            ctx.log(f"could not delete disk {ref.target} ({ref.path}): {exc.message}")
        else:
            ctx.log(f"deleted disk {ref.target} ({ref.path})")
    kept = [
        d["target"]
        for d in deletable_disks(vm)
        if d["target"] not in {ref.target for ref in volumes}
    ]
    if kept:
        ctx.log(f"kept disk(s): {', '.join(kept)}")
    _refresh(ctx, node)
    if failed:
        raise HypervisorError(
            f"{vm.name} was undefined but some disks could not be deleted: {'; '.join(failed)}"
        )
