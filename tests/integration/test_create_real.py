"""Create VMs with virt-install on a real libvirtd + qemu (TCG) through the job runner."""

from __future__ import annotations

import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.utils import timezone

from jobs.choices import JobStatus
from jobs.models import Job
from jobs.runner import execute
from nodes.hypervisor import storage as hv_storage
from nodes.hypervisor import virtinstall
from nodes.hypervisor.states import VMState
from nodes.models import Node
from nodes.services import registry
from tests.lab.lab import Lab
from tests.lab.node import LabNode
from tests.support.factories import actor
from vms import vncsecret
from vms.forms.create import create_form
from vms.models import VirtualMachine
from vms.services import inventory
from vms.services.create import submit_create

MIB = 1024**2


@pytest.fixture
def leftovers(lab_node: LabNode) -> Iterator[list[str]]:
    """Names of domains/volumes a test may leave on node1; removed afterwards, pass or fail."""
    names: list[str] = []
    yield names
    for name in names:
        lab_node.virsh("destroy", name)
        lab_node.virsh("undefine", name, "--nvram")
        for vol in (f"{name}.qcow2", name):
            lab_node.virsh("vol-delete", vol, "--pool", "default")


@pytest.fixture
def node(manager_ssh: Path, lab_node: LabNode, db: None) -> Node:
    """node1 as the product sees it, pinned to TCG, with a guest bridge and fresh facts."""
    lab_node.add_guest_bridge()
    node = registry.add_node(actor=actor(), name="node1", uri=lab_node.uri, virt_type="qemu")
    return node


LOW_MTU_BRIDGE = "labmtu0"


def _ip(lab_node: LabNode, *args: str) -> str:
    proc = subprocess.run(
        ["ip", "-n", lab_node.netns, *args],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"ip {' '.join(args)}: {proc.stderr.strip()}"
    return proc.stdout


@pytest.fixture
def low_mtu_bridge(lab_node: LabNode) -> Iterator[str]:
    """A bridge at MTU 1400 in node1's netns, as a bridged VPN overlay leaves its VM bridge.

    Request it before ``leftovers``: the VM is removed first, then the bridge.
    """
    # A bridge a crashed earlier run left behind would keep its old MTU: start afresh.
    subprocess.run(["ip", "-n", lab_node.netns, "link", "del", LOW_MTU_BRIDGE],
                   capture_output=True, timeout=10, check=False)  # fmt: skip
    # Created, then lowered, as deploy/openvpn/kvmmgr-bridge does (an MTU set by hand
    # stays when ports join; one given at creation would follow the ports' MTU).
    _ip(lab_node, "link", "add", LOW_MTU_BRIDGE, "type", "bridge")
    _ip(lab_node, "link", "set", LOW_MTU_BRIDGE, "mtu", "1400")
    _ip(lab_node, "link", "set", LOW_MTU_BRIDGE, "up")
    yield LOW_MTU_BRIDGE
    _ip(lab_node, "link", "del", LOW_MTU_BRIDGE)


def refreshed(node: Node) -> Node:
    Node.objects.filter(pk=node.pk).update(facts_at=None)
    result = inventory.refresh_node(node)
    assert result.ok, result.error
    node.refresh_from_db()
    return node


def run(job: Job) -> Job:
    started = time.monotonic()
    execute(job.pk)
    job.refresh_from_db()
    job.elapsed = time.monotonic() - started  # type: ignore[attr-defined]
    return job


def domain_xml(lab_node: LabNode, name: str) -> ET.Element:
    proc = lab_node.virsh("dumpxml", "--security-info", name, check=True)
    return ET.fromstring(proc.stdout)


def test_import_of_a_qcow2_volume_runs_under_tcg_with_a_password_console(
    node: Node, lab_node: LabNode, leftovers: list[str]
) -> None:
    leftovers += ["ci-import1", "ci-import1-disk"]
    hv_storage.create_volume(lab_node.uri, "default", "ci-import1-disk", 64 * MIB, "qcow2")
    node = refreshed(node)
    assert "labbr0" in node.facts["bridges"]
    assert any(v["name"] == "ci-import1-disk" for v in node.facts["volumes"]["default"])

    req = create_form(
        node=node,
        name="ci-import1",
        vcpus=1,
        memory_mib=128,
        media="import",
        import_volume="default/ci-import1-disk",
        bridge="labbr0",
        os_variant="generic",
    )
    job = run(submit_create(req, actor=actor("alice")))
    assert job.status == JobStatus.SUCCEEDED, job.log
    assert job.elapsed < 30  # type: ignore[attr-defined]

    vm = VirtualMachine.objects.get(name="ci-import1")
    assert (vm.node, vm.state, vm.vcpus, vm.memory_mib) == (node, VMState.RUNNING, 1, 128)
    # On the node's loopback, never the URI's host.
    assert vm.vnc_listen == "127.0.0.1" and vm.vnc_port and vm.vnc_port >= 5900
    password = vncsecret.unseal(vm.vnc_password_sealed)
    assert password and password not in job.log and password not in job.command
    assert job.command.startswith(f"virt-install --connect {lab_node.uri} ")
    assert "command=" not in job.command  # the plain URI, not our ssh wrapper

    root = domain_xml(lab_node, "ci-import1")
    assert root.get("type") == "qemu"
    graphics = root.find("./devices/graphics[@type='vnc']")
    assert graphics is not None
    assert graphics.get("listen") == "127.0.0.1" and graphics.get("passwd") == password
    assert root.find("./devices/interface/source").get("bridge") == "labbr0"
    # The password reached QEMU through libvirt, never a command line: virt-install
    # carried a one-time password that had expired before the display opened.
    assert "passwordValidTo=2000-01-01T00:00:00" in job.command
    assert "VNC password set through libvirt" in job.log
    assert graphics.get("passwdValidTo") is None
    inactive = lab_node.virsh("dumpxml", "--inactive", "--security-info", "ci-import1", check=True)
    saved = ET.fromstring(inactive.stdout).find("./devices/graphics[@type='vnc']")
    assert saved is not None and saved.get("passwd") == password
    assert saved.get("passwdValidTo") is None
    query = '{"execute": "query-vnc"}'
    vnc = lab_node.virsh("qemu-monitor-command", "ci-import1", query, check=True).stdout
    assert '"auth": "vnc"' in vnc.replace('":"', '": "'), vnc


def test_new_disk_pxe_and_failed_start_is_cleaned_up(
    node: Node, lab_node: LabNode, leftovers: list[str]
) -> None:
    leftovers += ["ci-pxe1", "ci-pxe2"]
    node = refreshed(node)
    base = {"node": node, "vcpus": 1, "memory_mib": 128, "media": "pxe", "disk_gib": 1}
    first = run(
        submit_create(
            create_form(name="ci-pxe1", bridge="labbr0", vnc_port=5977, **base),
            actor=actor("alice"),
        )
    )
    assert first.status == JobStatus.SUCCEEDED, first.log
    assert "pool=default,size=1,format=qcow2" in first.command and "--pxe" in first.command
    assert hv_storage.find_volume(node.uri, "default", "ci-pxe1.qcow2") is not None
    assert VirtualMachine.objects.get(name="ci-pxe1").state == VMState.RUNNING

    # The inventory is stale (the VM holding port 5977 is not in it): the check before the
    # job passes, qemu then cannot bind the port, and the job must leave nothing behind.
    VirtualMachine.objects.filter(name="ci-pxe1").delete()
    second = run(
        submit_create(
            create_form(name="ci-pxe2", bridge="labbr0", vnc_port=5977, **base),
            actor=actor("alice"),
        )
    )
    assert second.status == JobStatus.FAILED
    assert "virt-install failed" in second.error
    assert "Nothing was left on the node." in second.error or "Removed" in second.error
    assert not virtinstall.domain_exists(node.uri, name="ci-pxe2")
    assert hv_storage.find_volume(node.uri, "default", "ci-pxe2.qcow2") is None


def test_unreachable_node_fails_the_job_quickly_and_creates_nothing(
    node: Node, lab: Lab, lab_node: LabNode
) -> None:
    node = refreshed(node)
    # A node whose facts say it is fine, but whose address now drops every packet.
    dead = Node.objects.create(
        name="dead",
        uri=f"qemu+ssh://root@{lab.blackhole_address}/system",
        virt_type="qemu",
        facts=node.facts,
        facts_at=timezone.now(),
        last_seen=timezone.now(),
    )
    req = create_form(
        node=dead,
        name="ci-dead1",
        vcpus=1,
        memory_mib=128,
        media="pxe",
        disk_gib=1,
        bridge="labbr0",
    )
    job = run(submit_create(req, actor=actor("alice")))
    assert job.status == JobStatus.FAILED
    assert job.elapsed < 10  # type: ignore[attr-defined]
    assert "unreachable" in job.error and "Nothing was created" in job.error
    assert not VirtualMachine.objects.filter(name="ci-dead1").exists()
    assert not virtinstall.domain_exists(lab_node.uri, name="ci-dead1")


def test_a_vm_on_a_low_mtu_bridge_gets_that_mtu_on_its_nic(
    low_mtu_bridge: str, node: Node, lab_node: LabNode, leftovers: list[str]
) -> None:
    leftovers += ["ci-mtu1", "ci-mtu1-disk"]
    hv_storage.create_volume(lab_node.uri, "default", "ci-mtu1-disk", 64 * MIB, "qcow2")
    node = refreshed(node)
    # The facts read the MTU through libvirt's interface API (udev backend, /sys).
    assert node.facts["bridge_mtus"][low_mtu_bridge] == 1400
    assert node.facts["bridge_mtus"]["labbr0"] == 1500

    req = create_form(
        node=node,
        name="ci-mtu1",
        vcpus=1,
        memory_mib=128,
        media="import",
        import_volume="default/ci-mtu1-disk",
        bridge=low_mtu_bridge,
        os_variant="generic",
    )
    job = run(submit_create(req, actor=actor("alice")))
    assert job.status == JobStatus.SUCCEEDED, job.log
    assert f"--network bridge={low_mtu_bridge},model=virtio,mtu.size=1400" in job.command
    assert f"bridge {low_mtu_bridge} on node1 has MTU 1400" in job.log

    nic = domain_xml(lab_node, "ci-mtu1").find("./devices/interface")
    assert nic is not None and nic.find("source").get("bridge") == low_mtu_bridge
    assert nic.find("mtu") is not None and nic.find("mtu").get("size") == "1400"
    # qemu's tap on the bridge runs at 1400 too (libvirt set it from <mtu>).
    tap = nic.find("target").get("dev")
    assert " mtu 1400 " in _ip(lab_node, "-o", "link", "show", tap)
