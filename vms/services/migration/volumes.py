"""The destination volumes a migration creates, and their removal.

They are the only thing created before libvirt starts; each is recorded in the
job, so whatever goes wrong they are removed again (by the job or the reconciler).
"""

from __future__ import annotations

from jobs.context import JobContext
from jobs.models import Job
from nodes.hypervisor import HypervisorError
from nodes.hypervisor import migration_prep as prep
from nodes.hypervisor import storage as hv_storage
from nodes.models import Node
from vms.services.migration.options import MIB


def create_volumes(ctx: JobContext, dest: Node, plans: list[prep.DestinationVolume]) -> None:
    for plan in plans:
        volume = hv_storage.create_volume(
            dest.uri, plan.pool, plan.name, plan.disk.capacity_bytes, plan.disk.format
        )
        created = ctx.job.params.setdefault("created_volumes", [])
        created.append({"pool": plan.pool, "name": plan.name, "path": volume.path})
        Job.objects.filter(pk=ctx.job.pk).update(params=ctx.job.params)
        ctx.log(
            f"created {plan.pool}/{plan.name} ({plan.disk.capacity_bytes // MIB} MiB, "
            f"{plan.disk.format}) on {dest.name}"
        )


def remove_created_volumes(ctx: JobContext, dest: Node) -> int:
    """Remove the destination volumes this job created; returns how many are left.

    Each removal is recorded in the job, so the reconciler retries only what is
    left (a cut link or a dead destination libvirtd keeps them out of reach).
    """
    left = 0
    for volume in ctx.job.params.get("created_volumes", []):
        if volume.get("removed"):
            continue
        try:
            hv_storage.delete_volume(dest.uri, volume["pool"], volume["name"])
        except HypervisorError as exc:
            ctx.log(f"cleanup: could not remove {volume['path']} on {dest.name}: {exc.message}")
            left += 1
            continue
        volume["removed"] = True
        Job.objects.filter(pk=ctx.job.pk).update(params=ctx.job.params)
        ctx.log(f"cleanup: removed {volume['path']} on {dest.name}")
    if left:
        ctx.log(f"cleanup: {left} volume(s) left on {dest.name}; the reconciler retries")
    return left
