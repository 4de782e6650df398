"""Media a migration leaves behind (ISO in the CD-ROM, read-only disks): check and remedies.

Runs the real adapter against libvirt's test driver: a source node file with a VM
whose CD-ROM holds an ISO from the default pool, and destination node files with
or without that ISO. Copying needs storage streams, which the test driver lacks;
the lab test (tests/integration/test_migration_media_real.py) copies for real.
"""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path
from unittest import mock

import libvirt
import pytest
from django.core.management import call_command
from django.urls import reverse

from jobs.context import JobContext
from jobs.models import Job
from nodes.hypervisor import HypervisorError, coldcopy
from nodes.hypervisor import media as hv_media
from nodes.hypervisor import migration as hv
from nodes.hypervisor.xml import parse_domain_devices, without_media
from tests.support.factories import make_node, make_vm
from vms.choices import JobKind, MediaRemedy
from vms.forms.migrate import migration_options
from vms.services.migration import media as migration_media
from vms.services.migration.volumes import remove_created_volumes

ISO = "/var/lib/libvirt/images/tiny.iso"
ISO_SIZE = 374784
VM_UUID = "6f1d6a53-2f0c-4a2b-9f7e-6b7e6a1c0001"

DOMAIN = f"""
  <domain type='test'>
    <name>isovm</name><uuid>{VM_UUID}</uuid>
    <memory unit='MiB'>128</memory><vcpu>1</vcpu><os><type arch='i686'>hvm</type></os>
    <devices>
      <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
        <source file='/var/lib/libvirt/images/isovm.qcow2'/><target dev='vda' bus='virtio'/></disk>
      <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
        <source file='{ISO}'/><target dev='hdc' bus='ide'/><readonly/></disk>
      <disk type='file' device='floppy'><target dev='fda' bus='fdc'/></disk>
      {{extra}}
    </devices>
  </domain>"""

READONLY_DISK = """<disk type='file' device='disk'><driver name='qemu' type='raw'/>
        <source file='/srv/shared/base.img'/><target dev='vdb' bus='virtio'/><readonly/></disk>"""


def _volume(name: str, size: int) -> str:
    return (
        f"<volume type='file'><name>{name}</name><capacity unit='bytes'>{size}</capacity>"
        f"<allocation unit='bytes'>{size}</allocation></volume>"
    )


def write_node(
    path: Path,
    *,
    volumes: str = "",
    domain: str = "",
    pool_path: str = "/var/lib/libvirt/images",
    more_pools: str = "",
) -> str:
    """A test-driver node file with a ``default`` dir pool (and ``more_pools`` as given)."""
    path.write_text(
        f"""<node>
  <cpu><mhz>2000</mhz><model>i686</model><active>4</active><nodes>1</nodes>
  <sockets>1</sockets><cores>4</cores><threads>1</threads></cpu>
  <memory>8388608</memory>
  {domain}
  {_pool("default", pool_path, volumes)}
  {more_pools}
</node>""",
        encoding="utf-8",
    )
    return f"test://{path}"


def _pool(name: str, path: str, volumes: str) -> str:
    # The test driver works out the pool's free space itself (100 GiB).
    return f"""<pool type='dir'><name>{name}</name><uuid>{uuidlib.uuid4()}</uuid>
    <capacity unit='MiB'>4096</capacity><allocation unit='MiB'>0</allocation>
    <target><path>{path}</path></target>{volumes}</pool>"""


def source_uri(tmp_path: Path, extra: str = "") -> str:
    return write_node(
        tmp_path / "src.xml",
        volumes=_volume("tiny.iso", ISO_SIZE) + _volume("isovm.qcow2", 64 << 20),
        domain=DOMAIN.replace("{extra}", extra),
    )


# --- the XML: the drive stays, its medium goes ---------------------------------------


def test_without_media_empties_the_drive_and_keeps_the_hardware() -> None:
    xml = DOMAIN.replace("{extra}", "")
    out = without_media(xml, {"hdc"})
    disks = {d.target: d for d in parse_domain_devices(out).disks}
    assert disks["hdc"].device == "cdrom" and disks["hdc"].path == "" and disks["hdc"].readonly
    assert disks["vda"].path == "/var/lib/libvirt/images/isovm.qcow2"  # untouched
    assert ISO not in out
    assert without_media(xml, {"hdz"}) == without_media(xml, set())  # no such drive here
    with pytest.raises(ValueError, match="vda is not a CD-ROM or floppy"):
        without_media(xml, {"vda"})


# --- the adapter on libvirt's test driver ---------------------------------------------


def test_source_media_lists_what_the_migration_does_not_copy(tmp_path: Path) -> None:
    media = hv_media.source_media(source_uri(tmp_path, READONLY_DISK), VM_UUID)
    assert media == [
        hv_media.Medium("hdc", "cdrom", "file", ISO, ISO_SIZE, "default", True),
        # Not in any pool on the source: libvirt's block info gives its size.
        hv_media.Medium("vdb", "disk", "file", "/srv/shared/base.img", mock.ANY, "", True),
    ]
    assert media[0].label == f"hdc (CD-ROM {ISO})"
    assert media[1].label == "vdb (read-only disk /srv/shared/base.img)"
    assert media[0].removable and not media[1].removable


@pytest.mark.parametrize(
    ("volumes", "pool_path", "present", "dest_size", "pool"),
    [
        (_volume("tiny.iso", ISO_SIZE), "/var/lib/libvirt/images", True, ISO_SIZE, "default"),
        ("", "/var/lib/libvirt/images", False, None, "default"),
        (_volume("tiny.iso", 4096), "/var/lib/libvirt/images", False, 4096, "default"),
        ("", "/srv/other", False, None, ""),
    ],
    ids=["same-path-same-size", "absent", "other-size", "no-pool-for-the-directory"],
)
def test_media_are_looked_up_on_the_destination(
    tmp_path: Path, volumes: str, pool_path: str, present: bool, dest_size: int | None, pool: str
) -> None:
    media = hv_media.source_media(source_uri(tmp_path), VM_UUID)
    dest = write_node(tmp_path / "dest.xml", volumes=volumes, pool_path=pool_path)
    [found] = hv_media.media_on_destination(dest, media)
    assert (found.present, found.dest_size_bytes, found.pool) == (present, dest_size, pool)
    assert found.volume_name == "tiny.iso"


def test_definitions_without_media_leave_the_source_domain_alone(tmp_path: Path) -> None:
    uri = source_uri(tmp_path)
    defs = hv_media.definitions_without_media(uri, VM_UUID, {"hdc"})
    assert defs.live and defs.persistent and ISO not in defs.live + defs.persistent
    assert '<disk type="file" device="cdrom">' in defs.live
    assert [m.path for m in hv_media.source_media(uri, VM_UUID)] == [ISO]
    with pytest.raises(HypervisorError, match="vda is not a CD-ROM"):
        hv_media.definitions_without_media(uri, VM_UUID, {"vda"})


def test_the_request_hands_libvirt_the_destination_definitions() -> None:
    request = hv.MigrationRequest(
        "u", "isovm", "qemu+ssh://root@n1/system", "qemu+ssh://root@n2/system", "100.64.0.2"
    )
    assert libvirt.VIR_MIGRATE_PARAM_DEST_XML not in request.params()
    ejected = hv.MigrationRequest(**{**vars(request), "dest_xml": "<a/>", "persist_xml": "<b/>"})
    params = ejected.params()
    assert params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] == "<a/>"
    assert params[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML] == "<b/>"
    argv = ejected.virsh_command()
    assert argv[-6:-2] == ["--xml", "isovm-dest.xml", "--persistent-xml", "isovm-persistent.xml"]


# --- the pre-check in the job ---------------------------------------------------------


def _job_for(source_uri_: str):
    source = make_node(name="n1", uri=source_uri_)
    vm = make_vm(source, name="isovm", uuid=uuidlib.UUID(VM_UUID))
    job = Job.objects.create(kind=JobKind.MIGRATE, vm=vm, target_name="isovm", requested_by="t")
    return source, vm, JobContext(job)


def _iso_only(tmp_path: Path):
    """A source whose VM has a disk, an ISO in its CD-ROM and an empty floppy drive."""
    return _job_for(source_uri(tmp_path))


@pytest.fixture
def nodes(db: None, tmp_path: Path):
    """Like ``_iso_only`` plus a read-only disk outside any pool."""
    return _job_for(source_uri(tmp_path, READONLY_DISK))


def _dest(tmp_path: Path, name: str = "n2", **kwargs: object):
    return make_node(name=name, uri=write_node(tmp_path / f"{name}.xml", **kwargs))


def test_media_missing_on_the_destination_fail_the_precheck_with_what_to_do(
    nodes, tmp_path: Path
) -> None:
    source, vm, ctx = nodes
    dest = _dest(tmp_path)
    with pytest.raises(HypervisorError) as info:
        migration_media.check_media(ctx, vm, source, dest, MediaRemedy.REFUSE)
    assert info.value.message.startswith(f"pre-check failed: media hdc (CD-ROM {ISO}):")
    assert f"{ISO} is not on n2 (looked in pool default)" in info.value.message
    assert "migratevm --media eject" in info.value.message and "--media copy" in ctx.job.log


def test_media_present_on_the_destination_pass(nodes, tmp_path: Path) -> None:
    source, vm, ctx = nodes
    [readonly] = [m for m in hv_media.source_media(source.uri, VM_UUID) if m.target == "vdb"]
    # Same path, same size on the destination, for both: nothing to do.
    dest = _dest(
        tmp_path,
        volumes=_volume("tiny.iso", ISO_SIZE),
        more_pools=_pool("shared", "/srv/shared", _volume("base.img", readonly.size_bytes or 0)),
    )
    plan = migration_media.check_media(ctx, vm, source, dest, MediaRemedy.REFUSE)
    assert plan == migration_media.MediaPlan()
    assert f"check media hdc (CD-ROM {ISO}): ok - on n2 too, same size" in ctx.job.log
    assert "check media vdb (read-only disk /srv/shared/base.img): ok" in ctx.job.log


def test_eject_takes_out_cdroms_but_not_read_only_disks(nodes, tmp_path: Path) -> None:
    source, vm, ctx = nodes
    dest = _dest(tmp_path)
    with pytest.raises(HypervisorError, match="only a CD-ROM or floppy medium can be taken out"):
        migration_media.check_media(ctx, vm, source, dest, MediaRemedy.EJECT)
    assert f"check media hdc (CD-ROM {ISO}): ok - {ISO} is not on n2" in ctx.job.log


def test_eject_plan_gives_the_live_request_destination_xml(db: None, tmp_path: Path) -> None:
    source, vm, ctx = _iso_only(tmp_path)
    dest = _dest(tmp_path)
    plan = migration_media.check_media(ctx, vm, source, dest, MediaRemedy.EJECT)
    assert plan.eject_targets == {"hdc"} and not plan.copy
    request = hv.MigrationRequest(VM_UUID, "isovm", source.uri, dest.uri, "100.64.0.2")
    ejected = migration_media.eject_for_live(ctx, plan, vm, request, dest)
    assert ejected.dest_xml and ISO not in ejected.dest_xml and ISO not in ejected.persist_xml
    assert "--xml isovm-dest.xml" in ctx.job.command
    assert f"media: took hdc (CD-ROM {ISO}) out for the move; isovm arrives on n2" in ctx.job.log
    cold = migration_media.eject_for_cold(
        ctx, plan, vm, coldcopy.inactive_xml(source.uri, VM_UUID), dest
    )
    assert ISO not in cold and 'device="cdrom"' in cold
    assert migration_media.eject_for_live(ctx, migration_media.MediaPlan(), vm, request, dest) is (
        request
    )


@pytest.mark.parametrize(
    ("dest_kwargs", "fragment"),
    [
        ({"volumes": _volume("tiny.iso", 4096)}, "kvmmgr does not overwrite it"),
        ({"pool_path": "/srv/other"}, "n2 has no active storage pool for /var/lib/libvirt/images"),
    ],
    ids=["a-different-file-there", "no-pool"],
)
def test_copy_is_refused_where_it_cannot_work(
    db: None, tmp_path: Path, dest_kwargs: dict, fragment: str
) -> None:
    source, vm, ctx = _iso_only(tmp_path)
    with pytest.raises(HypervisorError, match="pre-check failed") as info:
        migration_media.check_media(ctx, vm, source, _dest(tmp_path, **dest_kwargs), "copy")
    assert fragment in info.value.message


def test_a_failed_copy_is_removed_with_the_jobs_other_volumes(db: None, tmp_path: Path) -> None:
    source, vm, ctx = _iso_only(tmp_path)
    dest = _dest(tmp_path)
    plan = migration_media.check_media(ctx, vm, source, dest, MediaRemedy.COPY)
    assert [i.medium.target for i in plan.copy] == ["hdc"]
    assert f"{ISO} is not on n2 (looked in pool default); it is copied to n2's pool default" in (
        ctx.job.log
    )
    # The test driver has no storage streams; force the copy's failure at our seam.
    with (
        mock.patch.object(
            coldcopy,
            "copy_volume",
            autospec=True,
            side_effect=HypervisorError("stream broke", retryable=True),
        ),
        pytest.raises(HypervisorError, match=f"copying {ISO} to n2 failed: stream broke"),
    ):
        migration_media.copy_media(ctx, plan, source, dest)
    assert ctx.job.params["created_volumes"] == [
        {"pool": "default", "name": "tiny.iso", "path": ISO, "media": True}
    ]
    assert Job.objects.get(pk=ctx.job.pk).params["created_volumes"][0]["name"] == "tiny.iso"
    assert remove_created_volumes(ctx, dest) == 0
    assert f"cleanup: removed {ISO} on n2" in ctx.job.log
    [again] = hv_media.media_on_destination(dest.uri, hv_media.source_media(source.uri, VM_UUID))
    assert again.dest_size_bytes is None


# --- options from the CLI and the page ------------------------------------------------


def test_media_option_is_validated() -> None:
    assert migration_options({}).media == ""
    assert migration_options({"media": "Eject"}).media == "eject"
    assert migration_options({"media": "copy"}).media == "copy"
    with pytest.raises(Exception, match="Media must be one of eject, copy"):
        migration_options({"media": "burn"})


@pytest.mark.django_db
def test_cli_and_page_pass_the_media_remedy(admin_client) -> None:
    from django.utils import timezone

    source = make_node(name="n1", uri="qemu+ssh://root@127.0.0.1/system", last_seen=timezone.now())
    dest = make_node(name="n2", uri="qemu+ssh://root@localhost/system", last_seen=timezone.now())
    summary = parse_domain_devices(DOMAIN.replace("{extra}", "")).as_dict()
    vm = make_vm(source, name="isovm", xml_summary=summary)
    call_command("migratevm", "isovm", "n2", "--media", "eject")
    job = Job.objects.get()
    assert job.params["media"] == "eject"
    Job.objects.all().delete()
    url = reverse("vms:vm_migrate", args=[vm.uuid])
    page = admin_client.get(url).content.decode()
    assert f"This VM has hdc (cdrom {ISO})" in page and 'name="media"' in page
    response = admin_client.post(url, {"destination": dest.pk, "media": "copy"})
    assert response.status_code == 302
    assert Job.objects.get().params["media"] == "copy"
    response = admin_client.post(url, {"destination": dest.pk, "media": "burn"})
    assert response.status_code == 200 and "Media must be one of" in response.content.decode()
