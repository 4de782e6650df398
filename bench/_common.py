"""Shared helpers: a throwaway Django setup, seeding, page timing, statistics.

Import this module before any Django model: ``setup_django()`` must run first.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid as uuidlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def setup_django(data_dir: Path | None = None) -> Path:
    """Point kvmmgr at a fresh SQLite database in a temp dir, set up Django, migrate.

    Returns the data dir (a new temp dir unless one is given). The caller owns it.
    """
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="kvmmgr-bench-"))
    os.environ["KVMMGR_DATA_DIR"] = str(data_dir)
    # Never reuse a configured database: always the throwaway SQLite file.
    os.environ["DATABASE_URL"] = f"sqlite:///{data_dir / 'db.sqlite3'}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "kvmmgr.settings"
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    os.environ["DJANGO_DEBUG"] = "0"
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    return data_dir


# Set by ensure_row_template(): a note for the report when a workaround was needed.
WORKAROUNDS: list[str] = []
_HUMANIZE = "django.contrib.humanize.templatetags.humanize"


def ensure_row_template() -> None:
    """Make sure the VM row template compiles; work around a missing ``{% load humanize %}``.

    ``templates/vms/_vm_row.html`` uses ``naturaltime`` but (as of commit 1ce8750) does
    not load ``humanize`` itself, and an ``{% include %}`` does not inherit the parent's
    loads: the page answers 500 as soon as one VM exists. Benchmarks must not edit
    product code, so when that is still the case we add humanize to this process's
    template builtins — which is what the one-line fix in the template amounts to at
    render time — and say so in the report.
    """
    from django.template import TemplateSyntaxError, engines

    engine = engines["django"].engine  # type: ignore[attr-defined]
    try:
        engine.get_template("vms/_vm_row.html")
        return
    except TemplateSyntaxError as exc:
        if "naturaltime" not in str(exc):
            raise
    engine.builtins.append(_HUMANIZE)
    engine.template_builtins = engine.get_template_builtins(engine.builtins)
    for loader in engine.template_loaders:
        reset = getattr(loader, "reset", None)
        if reset is not None:
            reset()
    engine.get_template("vms/_vm_row.html")
    WORKAROUNDS.append(
        "templates/vms/_vm_row.html uses |naturaltime without {% load humanize %}: the VM "
        "list answers 500 with any VM. The benchmark added humanize to the template "
        "builtins of its own process to measure the page (product bug, not fixed here)."
    )


def machine() -> dict[str, str]:
    """What ran the benchmark, for the report."""
    import django
    import libvirt  # only for its version number

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    debian = ""
    try:
        debian = Path("/etc/debian_version").read_text(encoding="utf-8").strip()
    except OSError:
        pass
    lv = libvirt.getVersion()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu} × {os.cpu_count()}",
        "os": f"Debian {debian} ({platform.system()} {platform.release()})",
        "python": platform.python_version(),
        "django": django.get_version(),
        "sqlite": sqlite3.sqlite_version,
        "libvirt": f"{lv // 1_000_000}.{lv // 1000 % 1000}.{lv % 1000}",
    }


@dataclass
class Stats:
    n: int
    median_ms: float
    p95_ms: float
    min_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> Stats:
        ms = sorted(s * 1000.0 for s in seconds)
        # Nearest-rank p95.
        rank = max(1, -(-95 * len(ms) // 100))
        return cls(
            n=len(ms),
            median_ms=statistics.median(ms),
            p95_ms=ms[rank - 1],
            min_ms=ms[0],
            max_ms=ms[-1],
        )


def fmt_ms(value: float) -> str:
    return f"{value:.1f} ms" if value < 1000 else f"{value / 1000:.2f} s"


def seed_inventory(nodes: int, vms_per_node: int, *, prefix: str = "bench") -> list[Any]:
    """Create ``nodes`` online test-driver nodes with ``vms_per_node`` VMs each (ORM only).

    Two thirds of the VMs run with a VNC port (as ``tests/support/nodexml.make_domains``),
    so the template's console-link path is exercised. No host is contacted.
    """
    from django.utils import timezone

    from nodes.hypervisor.states import VMState
    from nodes.models import Node
    from vms.models import VirtualMachine

    now = timezone.now()
    created = Node.objects.bulk_create(
        [
            Node(
                name=f"{prefix}{i:03d}",
                uri=f"test:///nonexistent/{prefix}{i:03d}.xml",
                last_seen=now,
                last_attempt_at=now,
            )
            for i in range(nodes)
        ]
    )
    rows: list[VirtualMachine] = []
    for node in created:
        for j in range(vms_per_node):
            running = j % 3 != 2
            rows.append(
                VirtualMachine(
                    uuid=uuidlib.uuid4(),
                    node=node,
                    name=f"{node.name}-vm{j:03d}",
                    state=VMState.RUNNING if running else VMState.SHUTOFF,
                    vcpus=1 + j % 4,
                    memory_mib=256 * (1 + j % 8),
                    persistent=True,
                    vnc_port=5900 + j if running else None,
                    vnc_listen="0.0.0.0" if running else "127.0.0.1",
                    observed_at=now,
                )
            )
    VirtualMachine.objects.bulk_create(rows, batch_size=500)
    return list(Node.objects.order_by("name"))


def clear_inventory() -> None:
    """Delete every VM row and node with plain SQL.

    Not ``QuerySet.delete()``: its cascade collector visits every model related to
    ``VirtualMachine``, including ones another branch adds before their migration
    exists. The benchmark creates no related rows, so plain deletes are enough.
    """
    from django.db import connection

    from nodes.models import Node
    from vms.models import VirtualMachine

    with connection.cursor() as cursor:
        for model in (VirtualMachine, Node):
            cursor.execute(f"DELETE FROM {connection.ops.quote_name(model._meta.db_table)}")


def logged_in_client() -> Any:
    """A test Client logged in as a fresh user.

    ``setup_test_environment()`` is deliberately not called: it instruments every
    template render (a signal + context copy per ``{% include %}``), which would
    inflate the page time. ALLOWED_HOSTS has localhost, so the client uses that.
    """
    from django.contrib.auth import get_user_model
    from django.test import Client

    user_model = get_user_model()
    user = user_model.objects.filter(username="bench").first()
    if user is None:
        user = user_model.objects.create_user("bench", password="bench-password-not-secret")
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


@dataclass
class PageResult:
    label: str
    nodes: int
    vms: int
    stats: Stats
    queries: int
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stats"] = asdict(self.stats)
        return data


def time_page(
    client: Any, label: str, *, nodes: int, vms: int, runs: int, warmup: int
) -> PageResult:
    """GET the VM list ``warmup + runs`` times; time the runs, count SQL once (separately)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    url = reverse("vms:vm_list")
    for _ in range(warmup):
        response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}")
    times: list[float] = []
    size = 0
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - started)
        size = len(response.content)
    # Counting queries forces a debug cursor, so it is a separate, untimed request.
    with CaptureQueriesContext(connection) as ctx:
        client.get(url)
    return PageResult(label, nodes, vms, Stats.of(times), len(ctx.captured_queries), size)


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
