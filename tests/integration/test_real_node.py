"""The product against a real libvirtd over real qemu+ssh, with a real qemu guest."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from nodes.hypervisor import HypervisorError, list_domains, probe_host
from nodes.hypervisor import connection as conn_module
from nodes.hypervisor.states import VMState
from nodes.models import Node
from nodes.services import registry
from tests.lab.lab import GuestInfo, Lab
from tests.lab.node import LabNode
from tests.support.factories import actor
from vms.models import VirtualMachine
from vms.services import inventory


def installed_libvirt() -> str:
    """The version of the libvirtd the lab nodes run (``libvirtd (libvirt) 11.3.0``)."""
    out = subprocess.run(
        ["libvirtd", "--version"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    return out.split()[-1]


@pytest.mark.django_db
def test_inventory_of_a_real_node_shows_the_running_guest(
    manager_ssh: Path, lab_node: LabNode, running_guest: GuestInfo, admin_client: Client
) -> None:
    node = registry.add_node(actor=actor(), name="node1", uri=lab_node.uri)
    result = inventory.refresh_node(node)
    assert result.ok, result.error
    vm = VirtualMachine.objects.get(uuid=running_guest.uuid)
    assert (vm.name, vm.state, vm.node) == (running_guest.name, VMState.RUNNING, node)
    assert vm.vcpus == 1 and vm.memory_mib == 128
    assert vm.vnc_port is not None and vm.vnc_port >= 5900
    # listen 127.0.0.1 on the node: no vnc:// link (nothing outside the node reaches
    # it); the browser console goes through the manager's ssh path instead.
    assert vm.has_console and vm.vnc_url == ""
    # First contact pinned the node's host key.
    assert lab_node.address in manager_ssh.read_text()
    node.refresh_from_db()
    assert node.status_label == "online"
    assert node.facts["libvirt_version"] == installed_libvirt()
    page = admin_client.get(reverse("vms:vm_list")).content.decode()
    assert running_guest.name in page and f'href="/vm/{vm.uuid}/console/"' in page


def test_checknode_reports_versions_pools_and_virt_type(
    manager_ssh: Path, lab_node: LabNode
) -> None:
    report = probe_host(lab_node.uri)
    assert report.hostname == lab_node.name
    assert report.libvirt_version == installed_libvirt()
    assert report.hypervisor_version.startswith("QEMU ")
    assert "default" in [pool.name for pool in report.pools]
    assert report.memory_free_mib > 0
    assert report.virt_type in {"kvm", "qemu"}


@pytest.mark.django_db
def test_checknode_command(manager_ssh: Path, lab_node: LabNode, capsys) -> None:
    Node.objects.create(name="node1", uri=lab_node.uri)
    call_command("checknode", "node1")
    out = capsys.readouterr().out
    assert f"libvirt:     {installed_libvirt()}" in out and "default" in out


def test_blackholed_node_is_reported_unreachable_within_3_seconds(
    manager_ssh: Path, lab: Lab
) -> None:
    started = time.monotonic()
    with pytest.raises(HypervisorError) as info:
        list_domains(f"qemu+ssh://root@{lab.blackhole_address}/system")
    elapsed = time.monotonic() - started
    assert elapsed < 3.0
    assert info.value.retryable
    assert "unreachable" in info.value.message and "no answer" in info.value.message


@pytest.mark.django_db
def test_blackholed_node_shows_offline_and_does_not_block_others(
    manager_ssh: Path, lab: Lab, lab_node: LabNode, running_guest: GuestInfo
) -> None:
    good = registry.add_node(actor=actor(), name="good", uri=lab_node.uri)
    dead = registry.add_node(
        actor=actor(), name="dead", uri=f"qemu+ssh://root@{lab.blackhole_address}/system"
    )
    started = time.monotonic()
    assert not inventory.refresh_node(dead).ok
    assert time.monotonic() - started < 3.0
    assert inventory.refresh_node(good).ok
    dead.refresh_from_db()
    assert dead.status_label == "offline" and "unreachable" in dead.last_error


def test_changed_host_key_is_refused(manager_ssh: Path, lab_node: LabNode) -> None:
    # Pin a key that is not the node's: as if the host were replaced by another machine.
    manager_ssh.write_text(
        f"{lab_node.address} ssh-ed25519 "
        "AAAAC3NzaC1lZDI1NTE5AAAAIHJk2g3gJ0r5p1mDkQ0m3m0b8K7z1v5x9F8h2T8o0aQh\n"
    )
    with pytest.raises(HypervisorError) as info:
        list_domains(lab_node.uri)
    assert "does not match the pinned one" in info.value.message
    assert not info.value.retryable


def test_connection_is_reused_and_reopened_after_the_link_drops(
    manager_ssh: Path, lab_node: LabNode
) -> None:
    with conn_module.connection_for(lab_node.uri) as first:
        pass
    with conn_module.connection_for(lab_node.uri) as second:
        assert second is first
    first.close()
    assert {d.name for d in list_domains(lab_node.uri)} >= {"tiny1"}
