"""Evacuating a node through the tunnel onto a node behind NAT, and back.

vpn1 (public) and nat2 (behind its router, reached by the manager only through the
port forward) are joined by the product's tunnel. A real Celery worker (prefork, on
the test database) runs the evacuation and its child migrations, as in production.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings

from jobs.actions import request_abort
from jobs.choices import JobStatus
from jobs.models import Job
from nodes.models import Node
from nodes.services import registry
from tests.lab import nat
from tests.lab.fixtures import LabGuests
from tests.lab.lab import Lab
from tests.lab.liveness import ALIVE, last_number, wait_serial_progress
from tests.lab.node import LabNode
from tests.lab.trust import confirm_host_key
from tests.support.database import worker_database_url
from tests.support.factories import actor
from vms.models import VirtualMachine
from vms.services import evacuation, inventory
from vpn import services

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="session")
def nat_nodes(lab: Lab) -> tuple[LabNode, LabNode]:
    return nat.add_public_node(lab, "vpn1"), nat.add_nat_node(lab, "nat2")


class Worker:
    """``celery -A kvmmgr worker -B`` on the test database, killable like a crash."""

    def __init__(self, log: Path, extra: dict[str, str]) -> None:
        self.log, self.extra = log, extra
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "kvmmgr.settings",
            "DATABASE_URL": worker_database_url(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "KVMMGR_DATA_DIR": str(settings.DATA_DIR),
            "KVMMGR_SSH_KEY": str(settings.KVMMGR_SSH_KEY),
            "KVMMGR_SSH_KNOWN_HOSTS": str(settings.KVMMGR_SSH_KNOWN_HOSTS),
            "KVMMGR_VPN_DIR": str(settings.KVMMGR_VPN_DIR),
            "KVMMGR_INVENTORY_INTERVAL": "3600",  # the test refreshes when it needs to
            **self.extra,
        }
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "kvmmgr", "worker", "-B",
                 "--concurrency", "3", "--loglevel", "INFO",
                 "--schedule", str(self.log.with_suffix(".schedule"))],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once (a crash, not a shutdown)."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
            self.proc = None


@pytest.fixture
def worker(tmp_path: Path, manager_ssh: Path, vpn_dir: Path) -> Iterator[Callable[..., Worker]]:
    import redis

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    made: list[Worker] = []

    def start(**extra: str) -> Worker:
        made.append(Worker(tmp_path / "worker.log", extra))
        made[-1].start()
        return made[-1]

    yield start
    for each in made:
        each.stop()


@pytest.fixture
def vpn_dir(tmp_path: Path, settings: object) -> Iterator[Path]:
    settings.KVMMGR_VPN_DIR = tmp_path / "vpn"  # type: ignore[attr-defined]
    yield tmp_path / "vpn"


@pytest.fixture
def joined(
    manager_ssh: Path, vpn_dir: Path, nat_nodes: tuple[LabNode, LabNode]
) -> Iterator[tuple[Node, Node]]:
    """vpn1 and nat2 registered, host keys confirmed, the tunnel up."""
    vpn1, nat2 = nat_nodes
    server = registry.add_node(actor=actor(), name="vpn1", uri=vpn1.uri, virt_type="qemu")
    client = registry.add_node(actor=actor(), name="nat2", uri=nat2.uri, virt_type="qemu")
    for row, lab_node in ((server, vpn1), (client, nat2)):
        assert inventory.refresh_node(row).ok
        confirm_host_key(row, lab_node)
    tunnel = services.create_tunnel(name="t1", subnet=nat.TUNNEL_NET, server=server)
    services.add_client(tunnel, client)
    try:
        services.up(client)
        server.refresh_from_db()
        client.refresh_from_db()
        yield server, client
    finally:
        services.stop(client)
        services.stop(server)


def _boot(lab: Lab, guests: LabGuests, node: LabNode, other: LabNode, prefix: str,
          count: int, memory_mib: int = 128) -> list[str]:  # fmt: skip
    names = []
    stamp = int(time.time() * 1000) % 10000
    for index in range(count):
        name = guests.track(f"{prefix}{index}{stamp}", node, other)
        lab.boot_guest(node, name, timeout=120, disk_mib=64, memory_mib=memory_mib)
        names.append(name)
    return names


def _wait_job(job: Job, timeout: float, log: Path) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status in JobStatus.terminal():
            return job
        time.sleep(0.5)
    tail = log.read_text()[-3000:] if log.exists() else ""
    raise AssertionError(f"job {job.pk} still {job.status} after {timeout} s:\n{job.log}\n{tail}")


def _running_on(lab_node: LabNode, name: str) -> bool:
    result = lab_node.virsh("domstate", name)
    return result.returncode == 0 and result.stdout.strip() == "running"


def _spare_for(node: Node, mib: int) -> int:
    """The reserve that leaves exactly ``mib`` MiB to spare on ``node`` for the plan."""
    node.refresh_from_db()
    return int(node.facts["memory_free_mib"]) - mib


def test_evacuate_through_the_tunnel_and_return_one_too_large_stays(
    lab: Lab,
    nat_nodes: tuple[LabNode, LabNode],
    joined: tuple[Node, Node],
    lab_guests: LabGuests,
    worker: Callable[..., Worker],
    settings: object,
    tmp_path: Path,
) -> None:
    vpn1, nat2 = nat_nodes
    server, client = joined
    small = _boot(lab, lab_guests, vpn1, nat2, "ev", 3)
    (big,) = _boot(lab, lab_guests, vpn1, nat2, "evbig", 1, memory_mib=256)
    assert inventory.refresh_node(server).ok and inventory.refresh_node(client).ok
    # nat2 (the lab shares this machine's memory) gets room for the three small ones only.
    settings.KVMMGR_EVACUATE_MEMORY_RESERVE_MIB = _spare_for(client, 3 * 128 + 64)  # type: ignore[attr-defined]
    plan, job = evacuation.request_evacuation(server, actor(), to=["nat2"])
    moves = {m.name: m for m in plan.moves}
    assert [moves[n].dest for n in small] == ["nat2"] * 3 and moves[big].state == "stays"
    assert "needs 256" in moves[big].reason
    floors = {name: last_number(vpn1, name, ALIVE) for name in small}
    w = worker(KVMMGR_EVACUATE_MEMORY_RESERVE_MIB=str(settings.KVMMGR_EVACUATE_MEMORY_RESERVE_MIB))  # type: ignore[attr-defined]
    assert job is not None
    job = _wait_job(job, 300, w.log)
    # Three moved, the large one reported and left running where it was.
    assert job.status == JobStatus.FAILED, job.log
    assert "3 of 4 VMs moved" in job.error and f"{big} stays" in job.error, job.error
    for name in small:
        assert _running_on(nat2, name) and not _running_on(vpn1, name), name
        wait_serial_progress(nat2, name, floors[name], ALIVE)  # the guest goes on
    assert _running_on(vpn1, big) and not _running_on(nat2, big)
    children = list(Job.objects.filter(parent=job))
    assert len(children) == 3 and all(c.status == JobStatus.SUCCEEDED for c in children)
    assert all("--migrateuri tcp://100.64.0.2" in c.command for c in children)
    server.refresh_from_db()
    assert server.in_maintenance

    # Maintenance over: the three come back.
    registry.set_maintenance(server, actor(), False)
    floors = {name: last_number(nat2, name, ALIVE) for name in small}
    plan, back = evacuation.request_evacuation(server, actor(), returning=True)
    assert sorted(m.name for m in plan.moves) == sorted(small)
    assert back is not None
    back = _wait_job(back, 300, w.log)
    assert back.status == JobStatus.SUCCEEDED, back.log
    for name in small:
        assert _running_on(vpn1, name) and not _running_on(nat2, name), name
        wait_serial_progress(vpn1, name, floors[name], ALIVE)
    assert VirtualMachine.objects.filter(name__in=small, node=server).count() == 3


def test_abort_mid_evacuation_leaves_every_vm_on_exactly_one_node(
    lab: Lab,
    nat_nodes: tuple[LabNode, LabNode],
    joined: tuple[Node, Node],
    lab_guests: LabGuests,
    worker: Callable[..., Worker],
) -> None:
    vpn1, nat2 = nat_nodes
    server, client = joined
    names = _boot(lab, lab_guests, vpn1, nat2, "ab", 3)
    assert inventory.refresh_node(server).ok and inventory.refresh_node(client).ok
    _, job = evacuation.request_evacuation(server, actor(), to=["nat2"])
    assert job is not None
    w = worker()
    deadline = time.monotonic() + 120
    while not Job.objects.filter(parent=job, status=JobStatus.RUNNING).exists():
        assert time.monotonic() < deadline, job.log
        time.sleep(0.2)
    job.refresh_from_db()
    assert request_abort(job, actor())
    job = _wait_job(job, 180, w.log)
    assert job.status == JobStatus.ABORTED, job.log
    assert not Job.objects.filter(parent=job, status__in=JobStatus.active()).exists()
    for name in names:
        places = [n.name for n in (vpn1, nat2) if _running_on(n, name)]
        assert len(places) == 1, (name, places, job.log)
    # At least one never started: the abort stopped the scheduling.
    assert Job.objects.filter(parent=job).count() < 3, job.log


def test_a_killed_worker_resumes_the_evacuation(
    lab: Lab,
    nat_nodes: tuple[LabNode, LabNode],
    joined: tuple[Node, Node],
    lab_guests: LabGuests,
    worker: Callable[..., Worker],
) -> None:
    vpn1, nat2 = nat_nodes
    server, client = joined
    names = _boot(lab, lab_guests, vpn1, nat2, "rs", 2)
    assert inventory.refresh_node(server).ok and inventory.refresh_node(client).ok
    _, job = evacuation.request_evacuation(server, actor(), to=["nat2"])
    assert job is not None
    fast = {"KVMMGR_JOB_STALE_AFTER": "6", "KVMMGR_JOB_HEARTBEAT": "1",
            "KVMMGR_RECONCILE_INTERVAL": "5"}  # fmt: skip
    w = worker(**fast)
    # Kill it once the first move has finished and the second is under way (or queued).
    deadline = time.monotonic() + 180
    while Job.objects.filter(parent=job, status=JobStatus.SUCCEEDED).count() < 1:
        assert time.monotonic() < deadline, job.log
        time.sleep(0.2)
    w.kill()
    w = worker(**fast)
    job = _wait_job(job, 300, w.log)
    assert job.status == JobStatus.SUCCEEDED, job.log
    assert "queued again to resume" in job.log and "resuming" in job.log, job.log
    for name in names:
        assert _running_on(nat2, name) and not _running_on(vpn1, name), (name, job.log)
