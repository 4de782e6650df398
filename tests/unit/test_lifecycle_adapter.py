"""The lifecycle adapter and disk-volume deletion on libvirt's test driver."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest

from nodes.hypervisor import HypervisorError, connection_for, volumes_delete
from nodes.hypervisor import lifecycle as hv
from nodes.hypervisor.states import VMState
from nodes.hypervisor.xml import parse_domain_devices
from tests.support.lifecyclehost import DB1, IMAGES, SHARE1, STRAY, WEB1, write_lifecycle_host


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return write_lifecycle_host(tmp_path / "host.xml")


def _pool_paths(uri: str) -> set[str]:
    with connection_for(uri) as conn:
        pool = conn.storagePoolLookupByName("default")
        return {vol.path() for vol in pool.listAllVolumes()}


def test_devices_are_parsed_from_domain_xml() -> None:
    xml = """<domain type='kvm'><name>efi</name>
      <os firmware='efi'><type>hvm</type><nvram>/var/lib/libvirt/qemu/nvram/efi_VARS.fd</nvram></os>
      <devices>
        <disk type='block' device='disk'><driver name='qemu' type='raw'/>
          <source dev='/dev/vg0/efi'/><target dev='vda' bus='virtio'/></disk>
        <disk type='file' device='disk'><source file='/img/shared.img'/>
          <target dev='vdb'/><shareable/></disk>
        <disk type='network' device='disk'><source protocol='rbd' name='pool/img'/>
          <target dev='vdc'/></disk>
        <disk type='file' device='cdrom'><target dev='sda'/><readonly/></disk>
        <interface type='bridge'><mac address='52:54:00:12:34:56'/>
          <source bridge='br0'/><model type='e1000'/></interface>
        <serial type='file'><source path='/var/log/efi.log'/></serial>
        <graphics type='vnc' port='5901' autoport='no'>
          <listen type='address' address='10.0.0.5'/></graphics>
      </devices></domain>"""
    devices = parse_domain_devices(xml)
    by_target = {d.target: d for d in devices.disks}
    assert by_target["vda"].path == "/dev/vg0/efi" and by_target["vda"].deletable
    assert not by_target["vdb"].deletable  # shared with other VMs
    assert by_target["vdc"].path == "rbd:pool/img" and not by_target["vdc"].deletable
    assert not by_target["sda"].deletable and by_target["sda"].path == ""  # empty CD-ROM
    assert devices.nics[0].mac == "52:54:00:12:34:56" and devices.nics[0].source == "br0"
    assert devices.nics[0].model == "e1000"
    kinds = {(c.kind, c.type, c.detail) for c in devices.consoles}
    assert ("serial", "file", "/var/log/efi.log") in kinds
    assert ("graphics", "vnc", "10.0.0.5:5901") in kinds
    assert devices.uefi and devices.nvram.endswith("efi_VARS.fd")
    summary = devices.as_dict()
    assert summary["uefi"] is True and summary["disks"][0]["deletable"] is True


def test_start_shutdown_reboot_destroy(uri: str) -> None:
    assert hv.domain_state(uri, DB1, "db1") == VMState.SHUTOFF
    hv.start_domain(uri, DB1, "db1")
    assert hv.domain_state(uri, DB1, "db1") == VMState.RUNNING
    with pytest.raises(HypervisorError, match="could not start VM db1: it is already running"):
        hv.start_domain(uri, DB1, "db1")
    hv.reboot_domain(uri, DB1, "db1")
    assert hv.domain_state(uri, DB1, "db1") == VMState.RUNNING
    assert hv.shutdown_domain(uri, DB1, "db1", timeout=5) < 5
    assert hv.domain_state(uri, DB1, "db1") == VMState.SHUTOFF
    with pytest.raises(HypervisorError, match="could not reboot VM db1: it is not running"):
        hv.reboot_domain(uri, DB1, "db1")
    assert hv.destroy_domain(uri, WEB1, "web1") is True
    assert hv.destroy_domain(uri, WEB1, "web1") is False


def test_shutdown_that_the_guest_ignores_times_out(uri: str) -> None:
    # The guest never reacts to the power button: our seam delivers nothing.
    with mock.patch.object(hv, "_acpi_or_default", autospec=True) as press:
        waits: list[float] = []
        with pytest.raises(HypervisorError) as info:
            hv.shutdown_domain(uri, WEB1, "web1", timeout=0.3, poll=0.05, on_wait=waits.append)
    press.assert_called_once()
    assert "VM web1 did not shut down within 0.3 s" in info.value.message
    assert "Force it off" in info.value.message
    assert waits and hv.domain_state(uri, WEB1, "web1") == VMState.RUNNING


def test_unknown_uuid_names_the_vm(uri: str) -> None:
    with pytest.raises(HypervisorError) as info:
        hv.start_domain(uri, "99999999-9999-4999-8999-999999999999", "ghost")
    assert "could not start VM ghost: it is no longer defined" in info.value.message


def test_unreachable_node_names_the_vm() -> None:
    with pytest.raises(HypervisorError) as info:
        hv.destroy_domain("qemu+ssh://root@127.0.0.1:9/system", WEB1, "web1")
    assert info.value.message.startswith("could not force off VM web1: ")
    assert "unreachable" in info.value.message and info.value.retryable


def test_undefine_refuses_a_running_domain(uri: str) -> None:
    with pytest.raises(HypervisorError, match="it is running; force it off first"):
        hv.undefine_domain(uri, WEB1, "web1")


def test_undefine_removes_managed_save_and_snapshot_metadata(uri: str) -> None:
    with connection_for(uri) as conn:
        dom = conn.lookupByUUIDString(WEB1)
        dom.snapshotCreateXML("<domainsnapshot><name>before</name></domainsnapshot>", 0)
        dom.managedSave(0)  # leaves it shut off with a managed-save image
    options = hv.undefine_domain(uri, WEB1, "web1")
    assert options == ["--managed-save", "--snapshots-metadata"]
    with pytest.raises(HypervisorError, match="no longer defined"):
        hv.domain_state(uri, WEB1, "web1")


def test_plain_undefine_uses_no_flags(uri: str) -> None:
    assert hv.undefine_domain(uri, DB1, "db1") == []


def test_volumes_resolve_by_path_and_by_pool_volume(uri: str) -> None:
    disks = hv.domain_devices(uri, WEB1, "web1").disks
    own = [d for d in disks if d.deletable]
    refs = volumes_delete.resolve_volumes(uri, "web1", own)
    assert [(r.target, r.pool, r.name) for r in refs] == [
        ("vda", "default", "web1.qcow2"),
        ("vdb", "default", "web1-data.img"),
    ]
    assert refs[1].path == f"{IMAGES}/web1-data.img"
    volumes_delete.delete_volume(uri, refs[0])
    volumes_delete.delete_volume(uri, refs[0])  # already gone: fine
    assert f"{IMAGES}/web1.qcow2" not in _pool_paths(uri)
    assert f"{IMAGES}/web1-data.img" in _pool_paths(uri)


def test_disk_outside_every_pool_is_refused(uri: str) -> None:
    disks = list(hv.domain_devices(uri, STRAY, "stray").disks)
    with pytest.raises(HypervisorError) as info:
        volumes_delete.resolve_volumes(uri, "stray", disks)
    assert "not a volume of any storage pool" in info.value.message
    assert "/srv/elsewhere/stray.img" in info.value.message


def test_cdrom_is_never_deleted(uri: str) -> None:
    cdrom = [d for d in hv.domain_devices(uri, WEB1, "web1").disks if d.device == "cdrom"]
    with pytest.raises(HypervisorError, match="is a cdrom"):
        volumes_delete.resolve_volumes(uri, "web1", cdrom)


def test_volume_used_by_another_domain_is_found(uri: str) -> None:
    refs = volumes_delete.resolve_volumes(
        uri, "share1", list(hv.domain_devices(uri, SHARE1, "share1").disks)
    )
    users = volumes_delete.volume_users(uri, refs, exclude_uuid=SHARE1)
    assert users == {f"{IMAGES}/shared.qcow2": ["share2"]}
