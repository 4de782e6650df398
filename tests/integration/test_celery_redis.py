"""Real Redis, a real Celery worker with embedded beat, the real test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings

from nodes.models import Node
from nodes.services import registry
from tests.support.database import worker_database_url
from tests.support.factories import actor
from vms.models import VirtualMachine

ROOT = Path(__file__).resolve().parents[2]


def _require_redis() -> None:
    try:
        redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1).ping()
    except redis.RedisError as exc:
        if os.environ.get("KVMMGR_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis at {settings.CELERY_BROKER_URL} is required: {exc}")
        pytest.skip(f"no Redis at {settings.CELERY_BROKER_URL}")


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Callable[[], str]]:
    """A Celery worker with embedded beat (1 s inventory interval) on the test database."""
    _require_redis()
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kvmmgr.settings",
        "DATABASE_URL": worker_database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "KVMMGR_DATA_DIR": str(settings.DATA_DIR),
        "KVMMGR_INVENTORY_INTERVAL": "1",
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "kvmmgr",
                "worker",
                "-B",
                "--pool",
                "solo",
                "--loglevel",
                "INFO",
                "--schedule",
                str(tmp_path / "beat-schedule"),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield log.read_text
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, log: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}; worker log:\n{log()[-3000:]}")


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_added_node_is_refreshed_by_worker_and_beat(
    worker: Callable[[], str], node_xml: Callable[..., str]
) -> None:
    node = registry.add_node(actor=actor(), name="celery-node", uri=node_xml(7, name="celery"))
    # The on-commit enqueue reaches the worker through Redis.
    _wait_for(
        lambda: VirtualMachine.objects.filter(node=node).count() == 7, 30, "first refresh", worker
    )
    first_attempt = Node.objects.get(pk=node.pk).last_attempt_at
    # Beat keeps refreshing (interval 1 s), and an unreachable node does not block it.
    registry.add_node(actor=actor(), name="dead", uri="qemu+ssh://root@127.0.0.1:9/system")
    _wait_for(
        lambda: (
            Node.objects.get(pk=node.pk).last_attempt_at > first_attempt
            and "unreachable" in Node.objects.get(name="dead").last_error
        ),
        30,
        "beat refresh",
        worker,
    )
    assert Node.objects.get(pk=node.pk).status_label == "online"
