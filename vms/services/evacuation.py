"""Evacuating a node: every VM moved off it by child migration jobs, and brought back.

A parent job (kind ``evacuate``) plans where each VM goes (:func:`plan`), puts the
node in maintenance, then runs at most ``parallel`` child migrations at once (and at
most ``per_destination``, default one, into any destination), smallest memory first,
and follows them. Its plan and the state of every move live in the job's
``progress_detail``: when the worker dies, the reaper queues the job again and it
resumes from what the database and the nodes say. *Abort* stops scheduling and
aborts the running children; each VM then stays where its own migration left it (a
failed migration leaves it on the source). ``--return`` moves the VMs the node's
last evacuation moved off it back onto it.
"""

from __future__ import annotations

import os.path
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from jobs import children
from jobs.choices import JobStatus
from jobs.context import JobContext
from jobs.errors import JobAborted, JobConflict, JobFailed
from jobs.models import Job
from jobs.runner import submit
from kvmmgr import audit
from kvmmgr.access import Actor, Permission
from kvmmgr.inputs.fields import truthy
from kvmmgr.models import Role
from nodes.hypervisor.states import VMState
from nodes.models import Node
from nodes.services import links, registry, trust
from vms.choices import JobKind
from vms.forms.evacuate import EvacuateForm
from vms.forms.migrate import migration_options
from vms.models import VirtualMachine
from vms.services import inventory
from vms.services.migration.request import request_migration

POLL_SECONDS = 1.0
MAX_ATTEMPTS = 2  # a move whose worker died is tried once more after a resume


@dataclass
class Move:
    uuid: str
    name: str
    memory_mib: int
    live: bool
    dest: str = ""  # node name; "" when it stays
    reason: str = ""  # why this destination, or why it stays
    state: str = "waiting"  # waiting, moving, moved, failed, stays
    job: int | None = None
    attempts: int = 0
    error: str = ""


@dataclass
class Plan:
    moves: list[Move] = field(default_factory=list)

    def as_dicts(self) -> list[dict[str, Any]]:
        return [asdict(move) for move in self.moves]

    @classmethod
    def from_dicts(cls, rows: list[dict[str, Any]]) -> Plan:
        return cls([Move(**row) for row in rows])


def destinations(source: Node, names: list[str] | None = None) -> list[Node]:
    """The nodes VMs may go to: named ones, or every enabled qemu+ssh node but ``source``."""
    nodes = Node.objects.filter(enabled=True, uri__startswith="qemu+ssh://").exclude(pk=source.pk)
    if names:
        found = {node.name: node for node in nodes.filter(name__in=names)}
        missing = [name for name in names if name not in found]
        if missing:
            raise ValidationError(
                {"to": [f"No enabled qemu+ssh node named {', '.join(missing)} (or it is "
                        f"{source.name} itself)."]}
            )  # fmt: skip
        return [found[name] for name in names]
    return list(nodes.order_by("name"))


def _disk_needs(vm: VirtualMachine, source: Node) -> list[tuple[str, int]]:
    """(directory, bytes) of each disk the migration copies (bytes 0: not known)."""
    sizes = {
        str(volume.get("path")): int(volume.get("capacity_bytes") or 0)
        for volumes in (source.facts.get("volumes") or {}).values()
        for volume in volumes
    }
    needs = []
    for disk in (vm.xml_summary or {}).get("disks", []):
        if disk.get("device") != "disk" or disk.get("readonly") or disk.get("shareable"):
            continue
        path = str(disk.get("path") or "")
        if path:
            needs.append((os.path.dirname(path), sizes.get(path, 0)))
    return needs


def _path_problem(source: Node, dest: Node) -> str:
    """What keeps every VM of ``source`` from ``dest``, whatever the VM, or ""."""
    if not dest.is_online:
        return f"{dest.name} is {dest.status_label}"
    if dest.in_maintenance:
        return f"{dest.name} is in maintenance"
    unconfirmed = trust.unconfirmed(source, dest)
    if unconfirmed:
        names = ", ".join(n.name for n in unconfirmed)
        return f"host key of {names} not confirmed (manage.py trustnode)"
    return links.recorded_problem(source, dest)


def _kind_problem(source: Node, dest: Node) -> str:
    if source.effective_virt_type != dest.effective_virt_type:
        kinds = f"{dest.effective_virt_type} vs {source.effective_virt_type}"
        return f"{dest.name} runs another kind of guest ({kinds})"
    return ""


def _why_not(
    vm: VirtualMachine,
    dest: Node,
    disks: list[tuple[str, int]],
    free_mib: int,
    room: dict[str, int],
) -> str:
    """Why ``vm`` (with ``disks``) cannot go to ``dest`` given what is left there, or ""."""
    if VirtualMachine.objects.present().filter(node=dest, name=vm.name).exists():
        return f"{dest.name} already has a VM named {vm.name}"
    if vm.memory_mib > free_mib:
        return f"{dest.name} has {max(free_mib, 0)} MiB to spare, {vm.name} needs {vm.memory_mib}"
    for directory, size in disks:
        if directory not in room:
            return f"{dest.name} has no storage pool for {directory}"
        if size > room[directory]:
            return f"{dest.name}'s pool for {directory} has {room[directory] // 2**20} MiB free"
    return ""


def plan(
    source: Node,
    vms: list[VirtualMachine],
    targets: list[Node],
) -> Plan:
    """Where each VM goes: the destination with the most memory to spare that fits it
    (free memory minus ``KVMMGR_EVACUATE_MEMORY_RESERVE_MIB`` minus what this plan already
    sends there), smallest VMs first. A VM that fits nowhere stays, with each reason."""
    reserve = settings.KVMMGR_EVACUATE_MEMORY_RESERVE_MIB
    free = {n.pk: int((n.facts or {}).get("memory_free_mib") or 0) - reserve for n in targets}
    room = {
        n.pk: {
            str(p.get("path")): int(p.get("available_bytes") or 0)
            for p in (n.facts or {}).get("pools", [])
            if p.get("active")
        }
        for n in targets
    }
    # Node-level checks read known_hosts and the tunnels once per destination, not per VM.
    path = {n.pk: _path_problem(source, n) for n in targets}
    kind = {n.pk: _kind_problem(source, n) for n in targets}
    result = Plan()
    for vm in sorted(vms, key=lambda v: (v.memory_mib, v.name)):
        move = Move(str(vm.uuid), vm.name, vm.memory_mib, vm.state == VMState.RUNNING)
        disks = _disk_needs(vm, source)
        reasons = {
            n.name: path[n.pk] or _why_not(vm, n, disks, free[n.pk], room[n.pk]) or kind[n.pk]
            for n in targets
        }
        fitting = [n for n in targets if not reasons[n.name]]
        if not fitting:
            move.state = "stays"
            move.reason = "; ".join(f"{r}" for r in reasons.values()) or "no other node"
        else:
            best = max(fitting, key=lambda n: (free[n.pk], n.name))
            move.dest = best.name
            move.reason = f"{free[best.pk]} MiB to spare there, the most of {len(fitting)} that fit"
            free[best.pk] -= vm.memory_mib
            for directory, size in disks:
                room[best.pk][directory] -= size
        result.moves.append(move)
    return result


def _evacuees(node: Node, include_stopped: bool) -> list[VirtualMachine]:
    states = [VMState.RUNNING] + ([VMState.SHUTOFF] if include_stopped else [])
    return list(VirtualMachine.objects.present().filter(node=node, state__in=states))


def _returnees(node: Node) -> list[VirtualMachine]:
    """The VMs the node's last finished evacuation moved off it, where they are now."""
    last = (
        Job.objects.filter(kind=JobKind.EVACUATE, node=node, params__returning=False)
        .exclude(status__in=JobStatus.active())
        .order_by("-created_at")
        .first()
    )
    if last is None:
        raise ValidationError(f"{node.name} has no finished evacuation to return VMs from.")
    moved = [m["uuid"] for m in last.progress_detail.get("moves", []) if m["state"] == "moved"]
    return list(VirtualMachine.objects.present().filter(uuid__in=moved).exclude(node=node))


def request_evacuation(node: Node, actor: Actor, **data: Any) -> tuple[Plan, Job | None]:
    """Plan, and unless ``dry_run`` queue, the evacuation of ``node`` (or the return).

    ``data`` are ``EvacuateForm``'s fields (``to``, ``parallel``, ``per_destination``,
    ``include_stopped``, ``options``, ``returning``, ``dry_run``) as typed or as values;
    the form checks them inside the audit record, so a refusal is audited. Raises
    ``ValidationError`` for bad input and ``JobConflict`` when the node already has an
    evacuation running.
    """
    form = EvacuateForm(data)
    what = "node.return" if truthy(form.data.get("returning", False)) else "node.evacuate"
    with audit.action(
        actor, Permission.NODE_MANAGE, what, target=node.name, params=dict(form.data)
    ) as done:
        values = form.values()
        returning, dry_run = values.pop("returning"), values["dry_run"]
        to, include_stopped = values["to"], values["include_stopped"]
        params = values
        done.params.update(params)
        if returning:
            if node.in_maintenance:
                raise ValidationError(
                    f"{node.name} is still in maintenance: end it first "
                    f"(manage.py maintenance {node.name} off), then return its VMs."
                )
            vms = _returnees(node)
            sources = {vm.node for vm in vms}
            result = Plan()
            for source in sorted(sources, key=lambda n: n.name):
                part = plan(source, [v for v in vms if v.node_id == source.pk], [node])
                result.moves.extend(part.moves)
        else:
            result = plan(node, _evacuees(node, include_stopped), destinations(node, to))
        if dry_run:
            done.detail = f"dry run: {len(result.moves)} VMs planned"
            return result, None
        job = submit(
            JobKind.EVACUATE,
            node=node,
            target_name=f"{'return to' if returning else 'evacuate'} {node.name}",
            requested_by=actor.name,
            lock_key=f"evacuate:{node.name}",
            params={**params, "returning": returning},
        )
        Job.objects.filter(pk=job.pk).update(progress_detail={"moves": result.as_dicts()})
        done.job = job
        return result, job


def _child_actor(ctx: JobContext) -> Actor:
    # The requester held node.manage (an admin) when the evacuation was accepted.
    return Actor(name=ctx.job.requested_by or "evacuation", role=Role.ADMIN,
                 source=f"job #{ctx.job.pk}")  # fmt: skip


def _refresh_states(moves: list[Move], node: Node) -> None:
    """Each move's state from its child job and, after a failure, from the inventory."""
    for move in moves:
        if move.job is None or move.state not in ("moving",):
            continue
        child = Job.objects.filter(pk=move.job).first()
        if child is None or child.status in JobStatus.active():
            continue
        if child.status != JobStatus.SUCCEEDED and child.params.get("worker_died"):
            # Where is it really? The worker died mid-migration; ask both nodes.
            for name in {child.node.name if child.node else "", move.dest} - {""}:
                target = Node.objects.filter(name=name).first()
                if target is not None:
                    inventory.refresh_node(target)
        vm = VirtualMachine.objects.select_related("node").filter(uuid=move.uuid).first()
        if child.status == JobStatus.SUCCEEDED:
            move.state = "moved"
        elif vm is not None and vm.node.name == move.dest:
            move.state = "moved"  # libvirt finished although the child did not
        elif child.params.get("worker_died") and move.attempts < MAX_ATTEMPTS:
            move.state = "waiting"  # its worker died with ours: try again
            move.error = child.error
        else:
            move.state = "failed"
            move.error = child.error or child.status


def _start_child(ctx: JobContext, move: Move, options: dict[str, Any]) -> None:
    vm = VirtualMachine.objects.select_related("node").filter(uuid=move.uuid).first()
    dest = Node.objects.filter(name=move.dest).first()
    if vm is None or dest is None:
        move.state, move.error = "failed", "the VM or its destination is gone"
        return
    if vm.node_id == dest.pk:
        move.state = "moved"
        return
    move.attempts += 1
    try:
        child = request_migration(vm, dest, migration_options(dict(options)), _child_actor(ctx))
    except (ValidationError, JobConflict) as exc:
        message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        move.state, move.error = "failed", message
        ctx.log(f"{move.name}: not started: {message}")
        return
    children.adopt(ctx.job, child)
    move.job, move.state = child.pk, "moving"
    ctx.log(f"{move.name}: migration job #{child.pk} to {move.dest} ({move.reason})")


def _save(ctx: JobContext, moves: list[Move]) -> None:
    total = len([m for m in moves if m.dest]) or 1
    finished = len([m for m in moves if m.state in ("moved", "failed")])
    ctx.progress(
        int(100 * finished / total),
        step=f"{finished} of {total} moves finished",
        moves=[asdict(m) for m in moves],
    )


def _abort_children(ctx: JobContext, moves: list[Move]) -> None:
    moving = [move.job for move in moves if move.state == "moving" and move.job]
    children.abort_children(ctx.job, _child_actor(ctx), ids=moving)
    children.wait_for_children(ctx.job, POLL_SECONDS)
    _refresh_states(moves, ctx.job.node)
    for move in moves:
        if move.state == "waiting":
            move.state, move.error = "failed", "not started: the evacuation was aborted"


def run_evacuate(ctx: JobContext) -> None:
    node = ctx.job.node
    if node is None:
        raise ValidationError("The node of this evacuation was removed.")
    params = ctx.params
    moves = Plan.from_dicts(ctx.job.progress_detail.get("moves", [])).moves
    if any(m.state != "waiting" or m.job for m in moves):
        ctx.log("resuming: the plan and its moves come from this job's record")
        for move in moves:
            if move.state == "moving":
                _refresh_states([move], node)
    if not params.get("returning"):
        registry.set_maintenance(node, _child_actor(ctx), True, f"evacuation job #{ctx.job.pk}")
    for move in moves:
        if move.state == "stays":
            ctx.log(f"{move.name} stays on {node.name}: {move.reason}")
    parallel = int(params.get("parallel") or 1)
    per_destination = int(params.get("per_destination") or 1)
    options = dict(params.get("options") or {})
    try:
        while True:
            ctx.check_abort()
            _refresh_states(moves, node)
            moving = [m for m in moves if m.state == "moving"]
            for move in moves:
                if len(moving) >= parallel:
                    break
                into = sum(1 for m in moving if m.dest == move.dest)
                if move.state == "waiting" and move.dest and into < per_destination:
                    _start_child(ctx, move, options)
                    if move.state == "moving":
                        moving.append(move)
            _save(ctx, moves)
            if not any(m.state in ("waiting", "moving") for m in moves):
                break
            time.sleep(POLL_SECONDS)
    except JobAborted:
        ctx.log("abort: no new migrations; aborting the running ones")
        _abort_children(ctx, moves)
        _save(ctx, moves)
        _summary(ctx, moves, node)
        raise
    for refresh in {node.name, *(m.dest for m in moves if m.dest)}:
        target = Node.objects.filter(name=refresh).first()
        if target is not None:
            inventory.refresh_node(target)
    _summary(ctx, moves, node)
    left = [m for m in moves if m.state != "moved"]
    if left:
        raise JobFailed(
            f"{len(moves) - len(left)} of {len(moves)} VMs moved; "
            + "; ".join(f"{m.name} {m.state}: {m.error or m.reason}" for m in left)
        )


def _summary(ctx: JobContext, moves: list[Move], node: Node) -> None:
    for move in moves:
        where = f"to {move.dest}" if move.dest else f"on {node.name}"
        detail = move.error or move.reason
        ctx.log(f"{move.name}: {move.state} {where}" + (f" ({detail})" if detail else ""))
