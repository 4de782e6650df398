"""Asking for a migration: the role, what the database can refuse, then the queued job."""

from __future__ import annotations

from dataclasses import asdict

from django.core.exceptions import ValidationError

from jobs.choices import JobStatus
from jobs.models import Job
from jobs.runner import submit
from kvmmgr import audit
from kvmmgr.access import Actor, Permission
from nodes.hypervisor.states import VMState
from nodes.models import Node
from nodes.services import registry
from vms.choices import JobKind
from vms.models import VirtualMachine
from vms.services.migration import features as mf
from vms.services.migration.options import MigrationOptions, wanted


def validate_request(vm: VirtualMachine, dest: Node | None) -> None:
    """What can be refused from the database alone, before a job exists."""
    if dest is None:
        raise ValidationError({"destination": "Unknown destination node."})
    if vm.vanished_at is not None:
        raise ValidationError(f"{vm.name} is no longer on {vm.node.name}.")
    if dest.pk == vm.node_id:
        raise ValidationError({"destination": f"{vm.name} is already on {dest.name}."})
    registry.refuse_if_in_maintenance(dest, "destination")
    for node, role in ((vm.node, "source"), (dest, "destination")):
        if not node.enabled:
            raise ValidationError(f"The {role} node {node.name} is disabled.")
        if not node.is_online:
            reason = f": {node.last_error}" if node.last_error else ""
            raise ValidationError(f"The {role} node {node.name} is offline{reason}.")
        if not node.uri.startswith("qemu+ssh://"):
            raise ValidationError(
                f"The {role} node {node.name} is not a qemu+ssh node; migration runs between "
                "hosts reached over ssh."
            )
    if vm.state not in (VMState.RUNNING, VMState.PAUSED, VMState.SHUTOFF):
        raise ValidationError(f"{vm.name} is {vm.get_state_display()}; it cannot migrate now.")
    if vm.state == VMState.SHUTOFF and not vm.persistent:
        raise ValidationError(f"{vm.name} is a stopped transient domain: nothing to migrate.")


def request_migration(
    vm: VirtualMachine, dest: Node | None, options: MigrationOptions, actor: Actor
) -> Job:
    """Check the role and what the database can tell, then queue the migration job."""
    params = {"source": vm.node.name, "destination": dest.name if dest else None}
    with audit.action(
        actor, Permission.VM_MIGRATE, "vm.migrate", target=vm.name, params=params
    ) as done:
        # Judge by the rows as they are now, not by objects a caller loaded earlier.
        vm = VirtualMachine.objects.select_related("node").get(pk=vm.pk)
        dest = Node.objects.filter(pk=dest.pk).first() if dest is not None else None
        validate_request(vm, dest)
        assert dest is not None
        validate_features(vm.node, dest, options)
        done.params.update(asdict(options))
        done.job = submit(
            JobKind.MIGRATE,
            vm=vm,
            target_name=vm.name,
            requested_by=actor.name,
            params={"destination_id": dest.pk, "destination": dest.name, **asdict(options)},
        )
        return done.job


def validate_features(source: Node, dest: Node, options: MigrationOptions) -> None:
    """Refuse a feature asked for by name that either node lacks (from stored facts)."""
    problems = mf.missing_features(
        wanted(options), mf.Endpoint.from_facts(source), mf.Endpoint.from_facts(dest)
    )
    if not problems:
        return
    field_of = {"postcopy": "postcopy", "sync_writes": "sync_writes"}
    errors: dict[str, list[str]] = {}
    for key, message in problems.items():
        field = field_of.get(key) or (
            "parallel_connections"
            if key == "parallel" and options.compression in ("auto", "none")
            else "compression"
        )
        errors.setdefault(field, []).append(message + ".")
    raise ValidationError(errors)


def request_postcopy(job: Job, actor: Actor) -> None:
    """Ask a running live migration that allows post-copy to switch to it now.

    Post-copy finishes a migration that pre-copy cannot: the guest runs on the
    destination at once and fetches the pages it still lacks on demand. Raises
    ``ValidationError`` when the job cannot switch.
    """
    with audit.action(
        actor, Permission.VM_MIGRATE, "vm.migrate.postcopy", target=job.target_name
    ) as done:
        done.job = job
        if job.kind != JobKind.MIGRATE or not job.params.get("postcopy"):
            raise ValidationError(
                f"Job {job.pk} is not a migration started with post-copy allowed."
            )
        if not Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
            postcopy_requested=True
        ):
            raise ValidationError(f"Job {job.pk} is not running.")
