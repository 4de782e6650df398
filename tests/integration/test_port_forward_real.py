"""Everyday VM work on a node the manager reaches only through its router's port forward.

Topology: tests/lab/nat.py. ``nat2`` is registered as
``qemu+ssh://root@198.51.100.254:2222/system``; the manager has no route to its own
address (198.18.0.12) nor into the tunnel. Every VM action goes through that
path, and migrations with media attached go through the product's tunnel to ``vpn1``.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client

from jobs import runner
from jobs.choices import JobStatus
from jobs.models import Job
from nodes.hypervisor import storage as hv_storage
from nodes.hypervisor.states import VMState
from nodes.models import Node
from nodes.services import registry
from stats.services import sampling
from tests.lab import nat
from tests.lab.fixtures import LabGuests
from tests.lab.lab import Lab
from tests.lab.node import LabNode, tcp_open
from tests.lab.trust import confirm_host_key
from tests.support.factories import actor
from vms.forms.create import create_form
from vms.forms.migrate import migration_options
from vms.models import VirtualMachine
from vms.services import inventory, lifecycle
from vms.services.create import submit_create
from vms.services.migration.request import request_migration
from vpn import services

IMAGES = Path("/var/lib/libvirt/images")
ISO = "pf-tiny.iso"
MIB = 1024**2


@pytest.fixture(scope="session")
def nat_nodes(lab: Lab) -> tuple[LabNode, LabNode]:
    return nat.add_public_node(lab, "vpn1"), nat.add_nat_node(lab, "nat2")


@pytest.fixture
def vpn_dir(tmp_path: Path, settings: object) -> Iterator[Path]:
    settings.KVMMGR_VPN_DIR = tmp_path / "vpn"  # type: ignore[attr-defined]
    yield tmp_path / "vpn"


@pytest.fixture
def nat2_guest_bridge(nat_nodes: tuple[LabNode, LabNode]) -> Iterator[str]:
    """``labbr0`` on nat2 for this test's guests, deleted afterwards (the bridged VPN
    test later puts its own tunnel subnet on that node and refuses an overlap)."""
    _, nat2 = nat_nodes
    yield nat2.add_guest_bridge()
    nat2.remove_guest_bridge()


@pytest.fixture
def created(nat_nodes: tuple[LabNode, LabNode]) -> Iterator[list[str]]:
    """Names of domains (and their NAME.qcow2) a test creates; removed on both nodes."""
    names: list[str] = []
    yield names
    for lab_node in nat_nodes:
        for name in names:
            lab_node.virsh("destroy", name)
            lab_node.virsh("undefine", name, "--nvram")
            lab_node.virsh("vol-delete", "--pool", "default", f"{name}.qcow2")
        lab_node.virsh("vol-delete", "--pool", "default", ISO)


def _run(job: Job) -> Job:
    runner.execute(job.pk)
    job.refresh_from_db()
    return job


def _vm(name: str) -> VirtualMachine:
    return VirtualMachine.objects.select_related("node").get(name=name, vanished_at=None)


def _put_iso(lab_node: LabNode, size_mib: int = 2) -> None:
    """An image in the node's default pool, as an admin uploads one (content irrelevant)."""
    path = lab_node.host_path(IMAGES / ISO)
    path.write_bytes(bytes(range(256)) * (size_mib * MIB // 256))
    lab_node.virsh("pool-refresh", "default", check=True)


def _register_port_forwarded(nat2: LabNode) -> Node:
    node = registry.add_node(actor=actor(), name=nat2.name, uri=nat2.uri, virt_type="qemu")
    result = inventory.refresh_node(node)
    assert result.ok, result.error
    node.refresh_from_db()
    # The key pinned through the port forward is nat2's own, not the router's.
    return confirm_host_key(node, nat2)


def _graphics(lab_node: LabNode, name: str) -> ET.Element | None:
    xml = lab_node.virsh("dumpxml", name, check=True).stdout
    return ET.fromstring(xml).find("./devices/graphics[@type='vnc']")


@pytest.mark.django_db
def test_every_vm_action_on_a_node_reached_through_a_port_forward(
    manager_ssh: Path,
    lab: Lab,
    nat_nodes: tuple[LabNode, LabNode],
    nat2_guest_bridge: str,
    created: list[str],
    admin_client: Client,
) -> None:
    _, nat2 = nat_nodes
    # The manager's only path: the router's port forward. Nothing else answers.
    assert nat2.uri == f"qemu+ssh://root@{nat.ROUTER_OUTSIDE}:{nat.forwarded_port(12)}/system"
    assert not tcp_open(nat2.address, 22, 2.0)
    _put_iso(nat2)
    created.extend(["pfiso", "pfimport", "pfpxe", "pfimport-disk"])
    hv_storage.create_volume(nat2.uri, "default", "pfimport-disk", 64 * MIB, "qcow2")
    node = _register_port_forwarded(nat2)
    assert any(v["name"] == ISO for v in node.facts["volumes"]["default"]), node.facts

    base = {"node": node, "vcpus": 1, "memory_mib": 128, "bridge": nat2_guest_bridge}
    for request in (
        create_form(name="pfiso", media="iso", iso=f"default/{ISO}", disk_gib=1, **base),
        create_form(
            name="pfimport",
            media="import",
            import_volume="default/pfimport-disk",
            os_variant="generic",
            **base,
        ),
        create_form(name="pfpxe", media="pxe", disk_gib=1, **base),
    ):
        job = _run(submit_create(request, actor=actor("alice")))
        assert job.status == JobStatus.SUCCEEDED, (request.data["name"], job.log)
        vm = _vm(request.data["name"])
        assert (vm.node, vm.state) == (node, VMState.RUNNING)
        # VNC listens on the node itself, never on the router's address from the URI.
        graphics = _graphics(nat2, request.data["name"])
        assert graphics is not None and graphics.get("listen") == "127.0.0.1"

    # Lifecycle on a guest that answers ACPI, through the same path.
    guest = lab.define_guest(nat2, "pflife", disk_mib=64)
    created.append("pflife")
    assert inventory.refresh_node(node).ok
    vm = _vm("pflife")
    job = _run(lifecycle.request_start(vm, actor("it")))
    assert job.status == JobStatus.SUCCEEDED, job.log
    lab.wait_guest_up(nat2, "pflife", 90, serial_log=guest.serial_log)
    job = _run(lifecycle.request_reboot(_vm("pflife"), actor("it")))
    assert job.status == JobStatus.SUCCEEDED, job.log
    # The reboot keeps the serial log: wait for the second boot's marker, or the
    # power button arrives while the guest boots and has no acpid yet.
    lab.wait_guest_up(nat2, "pflife", 90, serial_log=guest.serial_log, boots=2)
    job = _run(lifecycle.request_shutdown(_vm("pflife"), actor("it"), timeout=60))
    assert job.status == JobStatus.SUCCEEDED, job.log
    assert _vm("pflife").state == VMState.SHUTOFF
    job = _run(lifecycle.request_start(_vm("pflife"), actor("it")))
    assert job.status == JobStatus.SUCCEEDED, job.log
    job = _run(lifecycle.request_force_off(_vm("pflife"), actor("it")))
    assert job.status == JobStatus.SUCCEEDED and _vm("pflife").state == VMState.SHUTOFF

    # Stats through the port forward: two samples give rates, the charts show them.
    for _ in range(2):
        result = sampling.sample_node(node)
        assert result.ok, result.error
        time.sleep(1)
    series = admin_client.get(f"/stats/node/{node.pk}/series.json").json()
    assert len(series["t"]) >= 2 and series["cpu_pct"][-1] is not None, series
    page = admin_client.get("/").content.decode()
    assert all(name in page for name in ("pfiso", "pfimport", "pfpxe", "pflife")), page

    # Delete with disks, every VM made here.
    for name in ("pfiso", "pfpxe", "pfimport", "pflife"):
        vm = _vm(name)
        if vm.state != VMState.SHUTOFF:
            assert _run(lifecycle.request_force_off(vm, actor("it"))).status == "succeeded"
        disks = [d["target"] for d in lifecycle.deletable_disks(_vm(name))]
        job = _run(lifecycle.request_delete(_vm(name), actor("it"), disks=disks))
        assert job.status == JobStatus.SUCCEEDED, job.log
        assert nat2.virsh("dominfo", name).returncode != 0
    assert hv_storage.find_volume(nat2.uri, "default", "pfiso.qcow2") is None
    assert hv_storage.find_volume(nat2.uri, "default", "pflife.qcow2") is None
    # The ISO is media, not a disk of the VM: it stays in the pool.
    assert hv_storage.find_volume(nat2.uri, "default", ISO) is not None


@pytest.mark.django_db
def test_vm_with_an_iso_attached_migrates_through_the_tunnel_with_either_remedy(
    manager_ssh: Path,
    vpn_dir: Path,
    lab: Lab,
    nat_nodes: tuple[LabNode, LabNode],
    lab_guests: LabGuests,
    created: list[str],
) -> None:
    vpn1, nat2 = nat_nodes
    _put_iso(nat2)
    server = registry.add_node(actor=actor(), name=vpn1.name, uri=vpn1.uri, virt_type="qemu")
    confirm_host_key(server, vpn1)
    client = _register_port_forwarded(nat2)
    tunnel = services.create_tunnel(name="t1", subnet=nat.TUNNEL_NET, server=server)
    services.add_client(tunnel, client)
    try:
        services.up(client)
        server.refresh_from_db()
        client.refresh_from_db()
        name = lab_guests.track(f"viso{int(time.time() * 1000) % 10000}", nat2, vpn1)
        created.append(name)
        lab.boot_guest(nat2, name, timeout=90, disk_mib=64, cdrom=str(IMAGES / ISO))
        assert inventory.refresh_node(client).ok and inventory.refresh_node(server).ok
        vm = _vm(name)

        # No remedy: the pre-check names the image and both remedies; nothing changes.
        job = _run(request_migration(vm, server, migration_options({}), actor()))
        assert job.status == JobStatus.FAILED
        assert ISO in job.error and "eject" in job.error and "copy" in job.error, job.error
        assert hv_storage.find_volume(vpn1.uri, "default", f"{name}.qcow2") is None
        assert nat2.virsh("domstate", name, check=True).stdout.strip() == "running"

        # Eject for the move: it arrives on vpn1 with an empty drive.
        job = _run(
            request_migration(_vm(name), server, migration_options({"media": "eject"}), actor())
        )
        assert job.status == JobStatus.SUCCEEDED, job.log
        assert "took hdc (CD-ROM" in job.log and "--migrateuri tcp://100.64.0.1" in job.command
        assert vpn1.virsh("domstate", name, check=True).stdout.strip() == "running"
        assert ISO not in vpn1.virsh("dumpxml", name, check=True).stdout

        # Back, then with the image inserted again, copy it there first.
        job = _run(request_migration(_vm(name), client, migration_options({}), actor()))
        assert job.status == JobStatus.SUCCEEDED, job.log
        nat2.virsh("change-media", name, "hdc", str(IMAGES / ISO), "--insert", "--live",
                   "--config", check=True)  # fmt: skip
        assert inventory.refresh_node(client).ok
        job = _run(
            request_migration(_vm(name), server, migration_options({"media": "copy"}), actor())
        )
        assert job.status == JobStatus.SUCCEEDED, job.log
        copied = hv_storage.find_volume(vpn1.uri, "default", ISO)
        assert copied is not None and copied.capacity_bytes == 2 * MIB, copied
        assert ISO in vpn1.virsh("dumpxml", name, check=True).stdout
    finally:
        services.stop(client)
        services.stop(server)


def _ensure_pool(lab_node: LabNode, pool: str, target: str) -> None:
    if lab_node.virsh("pool-info", pool).returncode == 0:
        return
    lab_node.virsh("pool-define-as", pool, "dir", "--target", target, check=True)
    lab_node.virsh("pool-build", pool, check=True)
    lab_node.virsh("pool-start", pool, check=True)


@pytest.mark.django_db
def test_vm_with_two_disks_in_two_pools_migrates_there_and_back(
    manager_ssh: Path,
    vpn_dir: Path,
    lab: Lab,
    nat_nodes: tuple[LabNode, LabNode],
    lab_guests: LabGuests,
) -> None:
    """Each disk lands in the destination's pool that holds its directory, and leaves
    the source; both come back the same way."""
    vpn1, nat2 = nat_nodes
    data_dir = "/var/lib/libvirt/kvmdata"
    for lab_node in nat_nodes:
        _ensure_pool(lab_node, "kvmdata", data_dir)
    server = registry.add_node(actor=actor(), name=vpn1.name, uri=vpn1.uri, virt_type="qemu")
    confirm_host_key(server, vpn1)
    client = _register_port_forwarded(nat2)
    tunnel = services.create_tunnel(name="t1", subnet=nat.TUNNEL_NET, server=server)
    services.add_client(tunnel, client)
    name = lab_guests.track(f"v2d{int(time.time() * 1000) % 10000}", nat2, vpn1)
    data = f"{name}-data.qcow2"
    try:
        services.up(client)
        nat2.virsh("vol-create-as", "kvmdata", data, "32M", "--format", "qcow2", check=True)
        lab.boot_guest(nat2, name, timeout=90, disk_mib=64,
                       extra_disks=(f"{data_dir}/{data}",))  # fmt: skip
        assert inventory.refresh_node(client).ok and inventory.refresh_node(server).ok
        for dest, there, back in ((server, vpn1, nat2), (client, nat2, vpn1)):
            job = _run(request_migration(_vm(name), dest, migration_options({}), actor()))
            assert job.status == JobStatus.SUCCEEDED, job.log
            assert there.virsh("domstate", name, check=True).stdout.strip() == "running"
            for pool, volume in (("default", f"{name}.qcow2"), ("kvmdata", data)):
                assert hv_storage.find_volume(there.uri, pool, volume) is not None, (pool, job.log)
                assert hv_storage.find_volume(back.uri, pool, volume) is None, (pool, job.log)
    finally:
        services.stop(client)
        services.stop(server)
        for lab_node in nat_nodes:
            lab_node.virsh("vol-delete", "--pool", "kvmdata", data)
