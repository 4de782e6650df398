"""Fixtures for tests against the real, namespaced libvirt lab (tests/lab).

A pytest plugin (registered in tests/conftest.py) so tests/integration and the
browser tests in tests/e2e share ONE session-scoped lab: two definitions would
build two labs, and the second would wait forever on the machine's lab lock.

One lab per test session (nodes take seconds to start, guests a few more);
tests must leave ``node1`` and ``tiny1`` as they found them, or create their
own guests. Without root or the daemons the tests are skipped, except when
``KVMMGR_REQUIRE_LAB=1`` (set in CI) where a missing lab is a hard failure:
a CI run that silently skipped every integration test would prove nothing.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from tests.lab.lab import GuestInfo, Lab
from tests.lab.node import LabNode

LAB_LOCK = Path("/run/kvmmgr-lab/session.lock")

REQUIRED_PROGRAMS = (
    "libvirtd",
    "virtlogd",
    "virsh",
    "qemu-system-x86_64",
    "qemu-img",
    "sshd",
    "ssh",
    "ssh-keygen",
    "ip",
    "iptables",
    "unshare",
    "nsenter",
    "apt-get",
    "dpkg-deb",
)


def _missing_prerequisites() -> list[str]:
    """Reasons the lab cannot run on this machine (empty list: it can)."""
    reasons = []
    if os.geteuid() != 0:
        reasons.append("not root")
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    reasons += [
        f"{prog} not found" for prog in REQUIRED_PROGRAMS if not shutil.which(prog, path=search)
    ]
    return reasons


def _skip_or_fail(reason: str) -> None:
    """Skip normally; fail loudly when CI demands the lab."""
    if os.environ.get("KVMMGR_REQUIRE_LAB") == "1":
        pytest.fail(f"KVMMGR_REQUIRE_LAB=1 but the lab is unavailable: {reason}", pytrace=False)
    pytest.skip(f"integration lab unavailable: {reason}")


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """A running lab with node ``node1`` (plus bridge and blackhole), torn down at the end."""
    missing = _missing_prerequisites()
    if missing:
        _skip_or_fail(", ".join(missing))
    # One lab per machine: a second test session waits here instead of tearing
    # down the first one's namespaces (setup() cleans up stale labs).
    LAB_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LAB_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lab = Lab()
        try:
            lab.setup()
            lab.add_node("node1")
        except Exception:
            lab.teardown()
            raise
        try:
            yield lab
        finally:
            lab.teardown()


@pytest.fixture(scope="session")
def lab_node(lab: Lab) -> LabNode:
    """The lab's ``node1``: ``.uri``, ``.address``, ``.virsh(...)``, ``.host_key_pub``."""
    return lab.nodes["node1"]


@pytest.fixture(scope="session")
def running_guest(lab: Lab, lab_node: LabNode) -> GuestInfo:
    """Tiny guest ``tiny1`` running on ``node1``; ``.name``, ``.uuid``, ``.serial_log``."""
    info, _ = lab.boot_guest(lab_node, "tiny1", timeout=90)
    return info


@pytest.fixture
def manager_ssh(lab: Lab, tmp_path: Path) -> Iterator[Path]:
    """The manager logs in with the lab's key and pins host keys in its own file."""
    known_hosts = tmp_path / "known_hosts"
    with override_settings(KVMMGR_SSH_KEY=lab.key_path, KVMMGR_SSH_KNOWN_HOSTS=known_hosts):
        yield known_hosts


@pytest.fixture(scope="session")
def lab_node2(lab: Lab) -> LabNode:
    """A second node (198.51.100.12), started the first time a test needs it."""
    if "node2" not in lab.nodes:
        lab.add_node("node2")
    return lab.nodes["node2"]


class LabGuests:
    """Guests a test created, removed from the given nodes when the test ends."""

    def __init__(self) -> None:
        self.tracked: list[tuple[str, tuple[LabNode, ...]]] = []

    def track(self, name: str, *nodes: LabNode) -> str:
        self.tracked.append((name, nodes))
        return name


@pytest.fixture
def lab_guests(lab: Lab) -> Iterator[LabGuests]:
    """``lab_guests.track(name, node1, node2)``: removed at teardown, pass or fail."""
    guests = LabGuests()
    yield guests
    for name, nodes in guests.tracked:
        lab.remove_guest(name, *nodes)
