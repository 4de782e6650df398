"""Cold (offline) migration of a stopped VM: copy its disks, move its definition.

Order, so a failure at any step leaves the VM defined on exactly one node with its
disks intact: check, create the destination volumes, copy, define on the
destination, undefine on the source, and only then remove the source disks. A
failure before the source is undefined removes the destination's definition and
volumes again.
"""

from __future__ import annotations

from jobs.context import JobContext
from nodes.hypervisor import HypervisorError, coldcopy
from nodes.hypervisor import migration_prep as prep
from nodes.models import Node
from vms.models import VirtualMachine
from vms.services import inventory
from vms.services.migration import media as migration_media
from vms.services.migration.options import MIB, MigrationOptions
from vms.services.migration.prechecks import check_disk_placement, warn_nic_mtus
from vms.services.migration.volumes import create_volumes, remove_created_volumes


def run_cold(
    ctx: JobContext, vm: VirtualMachine, source: Node, dest: Node, options: MigrationOptions
) -> None:
    uuid = str(vm.uuid)
    ctx.set_command(
        [
            "virsh",
            "-c",
            source.uri,
            "migrate",
            "--offline",
            "--persistent",
            "--undefinesource",
            vm.name,
            dest.uri,
        ]
    )
    ctx.log(
        "cold migration: the disks are copied through libvirt storage streams "
        "(virsh vol-download on the source, vol-upload on the destination)"
    )
    ctx.progress(1, phase="pre-checks")
    plans = check_disk_placement(ctx, vm, source, dest)
    media = migration_media.check_media(ctx, vm, source, dest, options.media)
    warn_nic_mtus(ctx, dest, prep.domain_xml(source.uri, uuid))
    total = sum(plan.disk.capacity_bytes for plan in plans)
    if options.check_only:
        ctx.log(f"dry run: {vm.name} can move from {source.name} to {dest.name} while stopped")
        return
    xml = migration_media.eject_for_cold(
        ctx, media, vm, coldcopy.inactive_xml(source.uri, uuid), dest
    )
    defined = False
    try:
        create_volumes(ctx, dest, plans)
        migration_media.copy_media(ctx, media, source, dest)
        done = 0
        for plan in plans:
            ctx.check_abort()
            target = next(
                v["path"]
                for v in ctx.job.params["created_volumes"]
                if v["name"] == plan.name and v["pool"] == plan.pool
            )

            def progress(
                copied: int, _size: int, base: int = done, disk: str = plan.disk.target
            ) -> None:
                ctx.progress(
                    5 + int(85 * (base + copied) / max(total, 1)),
                    phase=f"copying {disk}",
                    disk_processed=base + copied,
                    disk_total=total,
                )

            copied = coldcopy.copy_volume(source.uri, plan.disk.path, dest.uri, target, progress)
            done += plan.disk.capacity_bytes
            ctx.log(f"copied {plan.disk.path} ({copied // MIB} MiB) to {dest.name}")
        ctx.check_abort()
        coldcopy.define(dest.uri, xml)
        defined = True
        ctx.log(f"defined {vm.name} on {dest.name}")
        coldcopy.undefine(source.uri, uuid)
        ctx.log(f"undefined {vm.name} on {source.name}")
    except BaseException:
        if defined:
            try:
                coldcopy.undefine(dest.uri, uuid)
                ctx.log(f"rollback: undefined {vm.name} on {dest.name}")
            except HypervisorError as exc:
                ctx.log(f"rollback: could not undefine {vm.name} on {dest.name}: {exc.message}")
        remove_created_volumes(ctx, dest)
        for node in (source, dest):
            inventory.refresh_node(node)
        raise
    if not options.keep_source_disks:
        for plan in plans:
            if prep.delete_path(source.uri, plan.disk.path):
                ctx.log(f"removed the source copy {plan.disk.path} on {source.name}")
    for node in (source, dest):
        inventory.refresh_node(node)
    ctx.progress(100, phase="completed", disk_processed=total, disk_total=total)
