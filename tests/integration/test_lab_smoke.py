"""Proves the lab itself works, so other integration failures point at the product."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.lab.guest import GUEST_MARKER
from tests.lab.lab import GuestInfo, Lab
from tests.lab.node import LabNode

pytestmark = pytest.mark.integration


def test_guest_is_running(running_guest: GuestInfo) -> None:
    """libvirt on the node reports the session guest as running."""
    proc = running_guest.node.virsh("domstate", running_guest.name, check=True)
    assert proc.stdout.strip() == "running"
    uuid = running_guest.node.virsh("domuuid", running_guest.name, check=True).stdout.strip()
    assert uuid == running_guest.uuid


def test_serial_log_has_marker(running_guest: GuestInfo) -> None:
    """The guest's init reached the point where it announces itself."""
    assert GUEST_MARKER in running_guest.serial_log.read_text(errors="replace")


def test_node_has_own_identity(lab_node: LabNode) -> None:
    """Hostname and host UUID are per node (migration needs distinct host UUIDs)."""
    assert lab_node.virsh("hostname", check=True).stdout.strip() == lab_node.name
    caps = lab_node.virsh("capabilities", check=True).stdout
    assert f"<uuid>{lab_node.host_uuid}</uuid>" in caps
    pools = lab_node.virsh("pool-list", "--name", check=True).stdout.split()
    assert "default" in pools


def test_blackhole_ssh_fails_fast(lab: Lab) -> None:
    """SYNs to the blackhole vanish; ssh with a 3 s ConnectTimeout gives up within 4 s."""
    started = time.monotonic()
    proc = subprocess.run(
        [*lab.ssh_argv(lab.blackhole_address, connect_timeout=3), "true"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode != 0
    assert "timed out" in proc.stderr.lower()
    assert elapsed < 4.0
