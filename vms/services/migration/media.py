"""A migration's pre-check and remedies for media the destination lacks.

A VM installed from an ISO usually keeps it in its CD-ROM drive. The migration
copies the VM's writable disks, not that image; the destination's qemu then
fails to open it at the very end ("Cannot access storage file"). So before
anything changes, every CD-ROM, floppy, read-only and shared disk with a source
is looked for on the destination (same path, same size). What the destination
lacks fails the pre-check with what to do, unless the job was asked for a remedy:

- ``eject``: the destination gets the domain's definition without that medium
  (libvirt's destination/persistent XML parameters; a cold move defines it so);
  the source's domain is not touched, so a failed migration changes nothing.
- ``copy``: the image is streamed into the destination pool first (the storage
  streams cold migration uses) and recorded with the job's created volumes, so a
  failed migration removes it again like the disks it pre-created.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from jobs.context import JobContext
from jobs.models import Job
from nodes.hypervisor import HypervisorError, coldcopy
from nodes.hypervisor import media as hv_media
from nodes.hypervisor import migration as hv
from nodes.hypervisor import storage as hv_storage
from nodes.hypervisor.xml import without_media
from nodes.models import Node
from vms.choices import MediaRemedy
from vms.models import VirtualMachine

MIB = 1024 * 1024


@dataclass(frozen=True)
class MediaPlan:
    """What the pre-check found missing on the destination and how each is dealt with."""

    eject: tuple[hv_media.MediumOnDestination, ...] = ()
    copy: tuple[hv_media.MediumOnDestination, ...] = ()

    @property
    def eject_targets(self) -> set[str]:
        return {item.medium.target for item in self.eject}


def _size(value: int | None) -> str:
    if value is None:
        return "unknown size"
    return f"{value} bytes" if value < MIB else f"{value / MIB:.1f} MiB"


def _problem(item: hv_media.MediumOnDestination, source: Node, dest: Node) -> str:
    medium = item.medium
    if medium.source_type == "network":
        return f"{medium.path} is network storage, which kvmmgr cannot look for on {dest.name}"
    if medium.size_bytes is None:
        return (
            f"{source.name} cannot tell the size of {medium.path} (it is in no storage "
            "pool there), so it cannot be compared with the destination's"
        )
    if item.dest_size_bytes is None:
        where = (
            f"pool {item.pool}"
            if item.pool
            else f"any storage pool (none has the directory {os.path.dirname(medium.path)})"
        )
        return f"{medium.path} is not on {dest.name} (looked in {where})"
    return (
        f"{dest.name} has a different {medium.path} ({_size(item.dest_size_bytes)}; "
        f"the source's is {_size(medium.size_bytes)})"
    )


def _cannot_copy(item: hv_media.MediumOnDestination, source: Node, dest: Node) -> str:
    """Why the copy remedy cannot apply to this medium ("" when it can)."""
    medium = item.medium
    directory = os.path.dirname(medium.path)
    if medium.source_type == "network" or medium.size_bytes is None or not medium.source_pool:
        return (
            f"{medium.path} is in no storage pool on {source.name}, so libvirt cannot stream "
            f"it: define a dir pool for {directory} there, or take it out for the move "
            "(--media eject)"
        )
    if not item.pool:
        return (
            f"{dest.name} has no active storage pool for {directory}: define a dir pool with "
            "that target path there, or take the medium out for the move (--media eject)"
        )
    if item.dest_size_bytes is not None:
        return (
            f"{dest.name} already has a different {medium.path} "
            f"({_size(item.dest_size_bytes)}, the source's is {_size(medium.size_bytes)}); "
            "kvmmgr does not overwrite it: rename one of them, or take the medium out for "
            "the move (--media eject)"
        )
    return ""


def check_media(
    ctx: JobContext, vm: VirtualMachine, source: Node, dest: Node, remedy: str
) -> MediaPlan:
    """Pre-check: each medium is on the destination, or the chosen remedy can handle it.

    Logs one check line per medium, then raises ``HypervisorError`` (nothing changed
    yet) naming every medium that is missing with no remedy chosen or one that
    cannot apply: an admin fixes them all in one go.
    """
    media = hv_media.source_media(source.uri, str(vm.uuid))
    if not media:
        ctx.log("check media: ok - no CD-ROM, floppy, read-only or shared disk with a source")
        return MediaPlan()
    eject: list[hv_media.MediumOnDestination] = []
    copy: list[hv_media.MediumOnDestination] = []
    failures: list[str] = []

    def check(what: str, ok: bool, detail: str) -> None:
        ctx.log(f"check {what}: {'ok' if ok else 'FAILED'} - {detail}")
        if not ok:
            failures.append(f"{what}: {detail}")

    for item in hv_media.media_on_destination(dest.uri, media):
        medium = item.medium
        what = f"media {medium.label}"
        if item.present:
            check(what, True, f"on {dest.name} too, same size ({_size(item.dest_size_bytes)})")
            continue
        problem = _problem(item, source, dest)
        if remedy == MediaRemedy.EJECT:
            check(
                what,
                medium.removable,
                f"{problem}; it is taken out for the move"
                if medium.removable
                else f"{problem}; only a CD-ROM or floppy medium can be taken out: copy it "
                f"(--media copy) or put it on {dest.name} at the same path",
            )
            eject.append(item)
        elif remedy == MediaRemedy.COPY:
            reason = _cannot_copy(item, source, dest)
            check(
                what,
                not reason,
                f"{problem}; {reason}"
                if reason
                else f"{problem}; it is copied to {dest.name}'s pool {item.pool} first",
            )
            copy.append(item)
        else:
            check(
                what,
                False,
                f"{problem}. The migration would fail on it: take the media out for the move "
                f"(migratevm --media eject, or 'take the media out' on the migrate page), "
                f"copy the image to {dest.name} first (--media copy), or put it on "
                f"{dest.name} at the same path",
            )
    needed: dict[str, int] = {}
    for item in copy:
        needed[item.pool] = needed.get(item.pool, 0) + (item.medium.size_bytes or 0)
    for pool, total in needed.items():
        available = next(i.pool_available_bytes for i in copy if i.pool == pool)
        check(
            f"space in pool {pool} for the media",
            available >= total,
            f"{available // MIB} MiB free, the media need {max(total // MIB, 1)} MiB",
        )
    if failures:
        raise HypervisorError("pre-check failed: " + "; ".join(failures))
    return MediaPlan(eject=tuple(eject), copy=tuple(copy))


def _eject_log(ctx: JobContext, plan: MediaPlan, vm: VirtualMachine, dest: Node) -> None:
    for item in plan.eject:
        ctx.log(
            f"media: took {item.medium.label} out for the move; {vm.name} arrives on "
            f"{dest.name} with that drive empty (the image stays where it is; insert it "
            "again there with virsh change-media once it is on that node)"
        )


def eject_for_live(
    ctx: JobContext, plan: MediaPlan, vm: VirtualMachine, request: hv.MigrationRequest, dest: Node
) -> hv.MigrationRequest:
    """The live migration's request with destination definitions that lack those media."""
    if not plan.eject:
        return request
    defs = hv_media.definitions_without_media(
        request.source_uri, request.domain_uuid, plan.eject_targets
    )
    request = replace(request, dest_xml=defs.live, persist_xml=defs.persistent)
    ctx.set_command(request.virsh_command())
    _eject_log(ctx, plan, vm, dest)
    return request


def eject_for_cold(
    ctx: JobContext, plan: MediaPlan, vm: VirtualMachine, inactive_xml: str, dest: Node
) -> str:
    """The definition a cold move defines on the destination, without those media."""
    if not plan.eject:
        return inactive_xml
    xml = without_media(inactive_xml, plan.eject_targets)
    _eject_log(ctx, plan, vm, dest)
    return xml


def copy_media(ctx: JobContext, plan: MediaPlan, source: Node, dest: Node) -> None:
    """Copy the images the destination lacks into its pool, recorded as created by the job.

    Recorded before the copy starts, so a failure at any point (here or in the
    migration after it) removes them again with the job's other volumes.
    """
    for item in plan.copy:
        ctx.check_abort()
        medium = item.medium
        size = medium.size_bytes or 0
        volume = hv_storage.create_volume(dest.uri, item.pool, item.volume_name, size, "raw")
        created = ctx.job.params.setdefault("created_volumes", [])
        created.append(
            {"pool": item.pool, "name": item.volume_name, "path": volume.path, "media": True}
        )
        Job.objects.filter(pk=ctx.job.pk).update(params=ctx.job.params)

        def progress(copied: int, total: int, target: str = medium.target) -> None:
            ctx.progress(
                4, phase=f"copying media {target}", disk_processed=copied, disk_total=total
            )

        try:
            copied = coldcopy.copy_volume(source.uri, medium.path, dest.uri, volume.path, progress)
        except HypervisorError as exc:
            raise HypervisorError(
                f"copying {medium.path} to {dest.name} failed: {exc.message}",
                retryable=exc.retryable,
            ) from exc
        ctx.log(
            f"media: copied {medium.label} to {dest.name}'s pool {item.pool} "
            f"({_size(copied)}); the image stays on {source.name} too, and on {dest.name} "
            "after the migration"
        )
