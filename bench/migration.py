"""Live migration on the real two-node lab: the product's job vs raw ``virsh migrate``.

    .venv/bin/python -m bench.migration [--rounds 3] [--skip-convergence] [--arm product|cli]
                                        [--json PATH]

Needs root and the lab's prerequisites (see ``tests/lab``). It takes the lab's
session lock (/run/kvmmgr-lab/session.lock, as ``tests/lab/fixtures.py``
does) for the whole run, waiting while another session holds it, then builds a
fresh lab with ``node1`` and ``node2`` and tears it down at the end.

1. **Product vs raw.** A tiny TCG guest (128 MiB RAM, 256 MiB qcow2 disk), once
   idle and once dirtying ~6 MiB/s, migrates back and forth. Each round is
   product (there), raw (back), raw (there), product (back), so both methods run
   the same number of times in each direction, interleaved. "Product" is the
   whole job: ``request_migration`` + ``runner.execute`` (pre-checks, destination
   volume, libvirt migration, removal of the source copy, inventory refresh of
   both nodes). "Raw" is ``virsh vol-create-as`` on the destination plus
   ``virsh migrate --live --p2p --copy-storage-all --persistent --undefinesource``
   on the manager against the source's URI (through the product's ssh wrapper)
   with the product's p2p peer URI, timed together; its downtime comes from
   ``domjobinfo --completed --keep-completed`` on the destination. After a raw
   run the benchmark (untimed) deletes the source copy and refreshes the inventory.
2. **Fast-dirtying guest** (dirty=32 MiB/s working set, bandwidth 16 MiB/s):
   plain pre-copy (max downtime 50 ms = the initial target, so nothing can be
   raised; abort at the completion timeout) vs the default convergence policy
   with a 3000 ms ceiling vs auto-converge with the default 500 ms ceiling.

The job's own log has one-second timestamps, so the job runs through a wrapper
handler that timestamps (``perf_counter``) every ``ctx.log`` / ``ctx.progress``
call: that is where the per-phase breakdown comes from. Product code is not
changed. Tasks go to Celery's in-memory broker (nothing is queued anywhere real);
the benchmark runs each job itself, like the integration tests.
"""

from __future__ import annotations

import argparse
import fcntl
import inspect
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import _common

# The same lock as tests/lab/fixtures.py: one lab session per machine.
LAB_LOCK = Path("/run/kvmmgr-lab/session.lock")
MIB = 1024 * 1024
IDLE_DOWNTIME_GOAL_MS = 300


# --- lab and Django ------------------------------------------------------------


@contextmanager
def lab_session() -> Iterator[Any]:
    """Hold the lab lock, build a lab with node1 + node2, tear it down afterwards."""
    from tests.lab.lab import Lab

    LAB_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LAB_LOCK.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for the lab lock {LAB_LOCK} (another session uses the lab)...")
            waited = time.monotonic()
            fcntl.flock(lock, fcntl.LOCK_EX)
            print(f"got the lab lock after {time.monotonic() - waited:.0f} s")
        lab = Lab()
        try:
            lab.setup()
            lab.add_nodes(["node1", "node2"])
            yield lab
        finally:
            lab.teardown()


def setup(data_dir_key: Path) -> Path:
    """Django on a throwaway DB; the manager logs in to the lab with the lab's key."""
    import tempfile

    data_dir = Path(tempfile.mkdtemp(prefix="kvmmgr-bench-"))
    os.environ["KVMMGR_SSH_KEY"] = str(data_dir_key)
    os.environ["KVMMGR_SSH_KNOWN_HOSTS"] = str(data_dir / "known_hosts")
    # submit() and add_node() hand tasks to Celery on commit: keep them in memory,
    # never on a real broker another process could consume from.
    os.environ["CELERY_BROKER_URL"] = "memory://"
    return _common.setup_django(data_dir)


def actor() -> Any:
    """Who the benchmark acts as: an admin ``Actor`` where the product has roles."""
    try:
        from kvmmgr.access import Actor
    except ImportError:  # before roles: a plain name
        return "bench"
    return Actor.system("bench")


def register(lab_node: Any) -> Any:
    from nodes.models import Node
    from nodes.services import registry
    from vms.services import inventory

    extra: dict[str, Any] = {}
    if "actor" in inspect.signature(registry.add_node).parameters:
        extra["actor"] = actor()
    row = Node.objects.filter(name=lab_node.name).first() or registry.add_node(
        name=lab_node.name, uri=lab_node.uri, virt_type="qemu", **extra
    )
    result = inventory.refresh_node(row)
    if not result.ok:
        raise RuntimeError(f"refresh of {lab_node.name} failed: {result}")
    row.refresh_from_db()
    if hasattr(registry, "confirm_trust"):  # revisions with confirmed host keys
        from tests.lab.trust import confirm_host_key

        row = confirm_host_key(row, lab_node)
    return row


def refresh(*nodes: Any) -> None:
    from vms.services import inventory

    for node in nodes:
        inventory.refresh_node(node)


# --- one product migration -------------------------------------------------------


@dataclass
class Mark:
    t: float
    kind: str  # "log" | "progress"
    text: str
    detail: dict[str, Any] = field(default_factory=dict)


def _timed_handler(marks: list[Mark]) -> Callable[[Any], None]:
    """The product's handler, with every log/progress call timestamped."""
    from vms.services.migration.live import run_migrate

    def handler(ctx: Any) -> None:
        original_log, original_progress = ctx.log, ctx.progress

        def log(line: str) -> None:
            marks.append(Mark(time.perf_counter(), "log", line))
            original_log(line)

        def progress(percent: int, **detail: Any) -> None:
            marks.append(Mark(time.perf_counter(), "progress", str(percent), dict(detail)))
            original_progress(percent, **detail)

        ctx.log = log
        ctx.progress = progress
        run_migrate(ctx)

    return handler


def _first(marks: list[Mark], pred: Callable[[Mark], bool], *, last: bool = False) -> float | None:
    hits = [m.t for m in marks if pred(m)]
    if not hits:
        return None
    return hits[-1] if last else hits[0]


def breakdown(t0: float, marks: list[Mark], t_end: float) -> dict[str, float]:
    """Seconds per phase of the job, from the timestamped calls."""

    def log_starts(prefix: str, *, last: bool = False) -> Callable[[], float | None]:
        return lambda: _first(
            marks, lambda m: m.kind == "log" and m.text.startswith(prefix), last=last
        )

    def progress(percent: int) -> Callable[[], float | None]:
        return lambda: _first(marks, lambda m: m.kind == "progress" and m.text == str(percent))

    # (label of the phase that ENDS at this checkpoint, checkpoint)
    checkpoints: list[tuple[str, Callable[[], float | None]]] = [
        ("claim job, load rows", progress(1)),
        ("no domain clash on dest (libvirt)", log_starts("check no such domain")),
        (
            "source disks + dest pool plan (libvirt)",
            log_starts("check space in pool", last=True),
        ),
        ("dest free memory (libvirt)", log_starts("check destination memory")),
        ("CPU compatibility (libvirt)", log_starts("check CPU compatibility")),
        ("trust install (only when the check fails)", log_starts("trust:", last=True)),
        (
            "p2p check + port knock (one ssh session to the source)",
            log_starts("check migration ports"),
        ),
        ("create dest volume (libvirt)", log_starts("created ", last=True)),
        ("libvirt migration (migrateToURI3)", progress(96)),
        ("stats + remove source disk", log_starts("removed the source copy", last=True)),
        ("inventory refresh of both nodes", progress(100)),
    ]
    result: dict[str, float] = {}
    previous = t0
    for label, checkpoint in checkpoints:
        at = checkpoint()
        if at is None:
            continue
        result[label] = at - previous
        previous = at
    result["finish job"] = t_end - previous
    return result


@dataclass
class Run:
    method: str  # "product" | "raw"
    guest: str
    direction: str
    wall_s: float
    ok: bool
    downtime_ms: int | None = None
    data_mib: float | None = None
    migrate_s: float | None = None  # the libvirt migration itself
    prep_s: float | None = None  # raw: vol-create-as
    phases: dict[str, float] = field(default_factory=dict)
    status: str = ""
    error: str = ""
    log: str = ""
    trace: list[dict[str, Any]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)


def product_migration(
    vm_uuid: str, guest: str, source: Any, dest: Any, options: dict[str, Any]
) -> Run:
    from jobs import runner
    from jobs.choices import JobStatus
    from jobs.models import Job
    from vms.forms.migrate import migration_options
    from vms.models import VirtualMachine
    from vms.services.migration.request import request_migration

    vm = VirtualMachine.objects.get(uuid=vm_uuid)
    if vm.node_id != source.pk:
        raise RuntimeError(f"inventory has {vm.name} on {vm.node.name}, expected {source.name}")
    marks: list[Mark] = []
    t0 = time.perf_counter()
    job = request_migration(vm, dest, migration_options(options), actor())
    status = runner.execute(job.pk, handler=_timed_handler(marks))
    t_end = time.perf_counter()
    job = Job.objects.get(pk=job.pk)
    detail = job.progress_detail or {}
    trace = [
        {
            "t": round(m.t - t0, 2),
            "phase": m.detail.get("phase"),
            "memory_remaining_mib": round(m.detail.get("memory_remaining", 0) / MIB, 1),
            "disk_remaining_mib": round(m.detail.get("disk_remaining", 0) / MIB, 1),
            "iteration": m.detail.get("iteration"),
            "dirty_mib_s": round(m.detail.get("dirty_rate_bps", 0) / MIB, 1),
            "memory_mib_s": round(m.detail.get("memory_bps", 0) / MIB, 1),
            "downtime_target_ms": m.detail.get("downtime_target_ms"),
        }
        for m in marks
        if m.kind == "progress" and "memory_remaining" in m.detail
    ]
    data = detail.get("data_processed")
    return Run(
        method="product",
        guest=guest,
        direction=f"{source.name}→{dest.name}",
        wall_s=t_end - t0,
        ok=status == JobStatus.SUCCEEDED,
        downtime_ms=detail.get("downtime_ms") if status == JobStatus.SUCCEEDED else None,
        data_mib=round(data / MIB, 1) if isinstance(data, int) and data else None,
        migrate_s=detail.get("wall_seconds"),
        phases=breakdown(t0, marks, t_end),
        status=str(status),
        error=job.error,
        log=job.log,
        trace=trace,
        actions=list(detail.get("actions") or []),
    )


# ``--profile-cli DIR``: run each CLI migration under cProfile, one file per run.
PROFILE_DIR: Path | None = None


def cli_migration(vm_uuid: str, guest: str, source: Any, dest: Any) -> Run:
    """``manage.py migratevm NAME DEST --wait`` end to end, as an admin types it.

    A new process: Python and Django start, the job is queued and (Celery eager, so
    no broker hop is hidden or added) run, ``--wait`` follows it to the end. The wall
    time is the command's, from exec to exit.
    """
    from jobs.choices import JobStatus
    from jobs.models import Job
    from vms.models import VirtualMachine

    vm = VirtualMachine.objects.get(uuid=vm_uuid)
    if vm.node_id != source.pk:
        raise RuntimeError(f"inventory has {vm.name} on {vm.node.name}, expected {source.name}")
    before = Job.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    env = {**os.environ, "CELERY_TASK_ALWAYS_EAGER": "1"}
    manage = str(_common.REPO / "manage.py")
    argv = [sys.executable, manage, "migratevm", vm.name, dest.name, "--wait"]
    if PROFILE_DIR is not None:  # cProfile adds its own overhead: profile or time, not both
        out = PROFILE_DIR / f"cli-{guest}-{before + 1}.prof"
        argv = [sys.executable, "-m", "cProfile", "-o", str(out), *argv[1:]]
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=False)
    wall = time.perf_counter() - t0
    job = Job.objects.filter(pk__gt=before, kind="migrate").order_by("-pk").first()
    detail = (job.progress_detail or {}) if job else {}
    ok = done.returncode == 0 and job is not None and job.status == JobStatus.SUCCEEDED
    data = detail.get("data_processed")
    return Run(
        method="cli",
        guest=guest,
        direction=f"{source.name}→{dest.name}",
        wall_s=wall,
        ok=ok,
        downtime_ms=detail.get("downtime_ms") if ok else None,
        data_mib=round(data / MIB, 1) if isinstance(data, int) and data else None,
        migrate_s=detail.get("wall_seconds"),
        phases={"job_s": round(job.duration_seconds or 0, 2)} if job else {},
        status=str(job.status if job else done.returncode),
        error=(job.error if job else "") or (done.stderr[-500:] if not ok else ""),
        log=job.log if job else done.stdout[-2000:],
        trace=[],
        actions=list(detail.get("actions") or []),
    )


# --- one raw virsh migration -----------------------------------------------------

DOWNTIME_RE = re.compile(r"^Total downtime:\s+(\d+)\s+ms", re.M)
PROCESSED_RE = re.compile(r"^Data processed:\s+([\d.]+) (KiB|MiB|GiB)", re.M)


def _virsh(uri: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    virsh = shutil.which("virsh") or "/usr/bin/virsh"
    return subprocess.run(
        [virsh, "-c", uri, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def raw_migration(
    vm_uuid: str,
    guest: str,
    source: Any,
    dest: Any,
    *,
    extra: Sequence[str] = (),
    timeout: float = 300,
) -> Run:
    """``virsh migrate`` as an admin types it; ``extra`` flags go before the domain name.

    After ``timeout`` seconds the migration is aborted (``domjobabort`` on the
    source) and the run counts as not converged; the volumes it pre-created on
    the destination are removed again, as an admin would.
    """
    from nodes.hypervisor import migration_prep as prep
    from nodes.hypervisor.connection import libvirt_uri_for
    from nodes.services import trust

    src_uri, dest_uri = libvirt_uri_for(source.uri), libvirt_uri_for(dest.uri)
    disks = prep.source_disks(source.uri, vm_uuid)  # untimed: sizes the admin knows
    address = dest.effective_migration_address
    tcp = f"tcp://{address}"
    migrate_argv = [
        "migrate",
        "--live",
        "--p2p",
        "--copy-storage-all",
        "--persistent",
        "--undefinesource",
        "--migrateuri",
        tcp,
        "--disks-uri",
        tcp,
        *extra,
        guest,
        trust.peer_uri(dest),
    ]
    t0 = time.perf_counter()
    for disk in disks:
        name = os.path.basename(disk.path)
        created = _virsh(
            dest_uri,
            "vol-create-as",
            "default",
            name,
            f"{disk.capacity_bytes}b",
            "--format",
            disk.format,
        )
        if created.returncode != 0:
            raise RuntimeError(f"vol-create-as on {dest.name}: {created.stderr.strip()}")
    t_prep = time.perf_counter()
    virsh = shutil.which("virsh") or "/usr/bin/virsh"
    proc = subprocess.Popen(
        [virsh, "-c", src_uri, *migrate_argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _virsh(src_uri, "domjobabort", guest, timeout=60)
        _, stderr = proc.communicate(timeout=120)
        stderr = f"not finished within {timeout:.0f} s, aborted: {stderr.strip()}"
    migrated = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
    t_end = time.perf_counter()
    run = Run(
        method="raw",
        guest=guest,
        direction=f"{source.name}→{dest.name}",
        wall_s=t_end - t0,
        ok=migrated.returncode == 0,
        prep_s=t_prep - t0,
        migrate_s=t_end - t_prep,
        error=migrated.stderr.strip(),
        log="virsh -c SRC " + " ".join(migrate_argv),
    )
    if not run.ok:
        for disk in disks:
            _virsh(dest_uri, "vol-delete", disk.path)
        return run
    info = _virsh(dest_uri, "domjobinfo", guest, "--completed", "--keep-completed")
    if m := DOWNTIME_RE.search(info.stdout):
        run.downtime_ms = int(m.group(1))
    if m := PROCESSED_RE.search(info.stdout):
        scale = {"KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0}[m.group(2)]
        run.data_mib = round(float(m.group(1)) * scale, 1)
    # Untimed: what the product's job also does, so the next run starts clean.
    for disk in disks:
        gone = _virsh(src_uri, "vol-delete", disk.path)
        if gone.returncode != 0:
            raise RuntimeError(f"vol-delete {disk.path} on {source.name}: {gone.stderr.strip()}")
    refresh(source, dest)
    return run


# --- the two benchmarks ----------------------------------------------------------


def boot(lab: Any, lab_node: Any, name: str, *, memory_mib: int, disk_mib: int, extra: str) -> str:
    info, seconds = lab.boot_guest(
        lab_node, name, timeout=120, disk_mib=disk_mib, memory_mib=memory_mib, cmdline_extra=extra
    )
    print(f"  booted {name} on {lab_node.name} in {seconds:.1f} s ({extra or 'idle'})", flush=True)
    return str(info.uuid)


def remove_guest(lab: Any, name: str) -> None:
    for node in lab.nodes.values():
        if node.virsh("domstate", name).returncode == 0:
            node.virsh("destroy", name)
            node.virsh("undefine", name)
        node.virsh("vol-delete", "--pool", "default", f"{name}.qcow2")


def _print_run(r: Run) -> None:
    down = f"{r.downtime_ms} ms" if r.downtime_ms is not None else "?"
    extra = f" (vol-create {r.prep_s:.2f} s)" if r.prep_s is not None else ""
    print(
        f"    {r.method:7s} {r.direction:14s} {r.wall_s:6.2f} s{extra}, migrate "
        f"{r.migrate_s if r.migrate_s is not None else float('nan'):.2f} s, downtime {down}, "
        f"{r.data_mib} MiB{'' if r.ok else '  FAILED: ' + (r.error or r.status)}",
        flush=True,
    )


def bench_product_vs_raw(
    lab: Any, nodes: dict[str, Any], rounds: int, arm: str = "product"
) -> dict[str, Any]:
    guests = [
        ("bmidle", ""),
        ("bmdirty", "dirty=6 counter=1 records=1"),
    ]
    results: dict[str, Any] = {}
    for name, extra in guests:
        print(f"\n[1] {name}: 128 MiB RAM, 256 MiB qcow2, {extra or 'idle'}", flush=True)
        uuid = boot(lab, lab.nodes["node1"], name, memory_mib=128, disk_mib=256, extra=extra)
        refresh(nodes["node1"], nodes["node2"])
        time.sleep(3)  # let the guest's workload settle after the boot marker
        here, there = nodes["node1"], nodes["node2"]
        runs: list[Run] = []
        try:
            for _ in range(rounds):
                for method in (arm, "raw", "raw", arm):
                    if method == "product":
                        run = product_migration(uuid, name, here, there, {})
                    elif method == "cli":
                        run = cli_migration(uuid, name, here, there)
                    else:
                        run = raw_migration(uuid, name, here, there)
                    _print_run(run)
                    runs.append(run)
                    if run.ok:
                        here, there = there, here
                        continue
                    # Record the failure, find where the guest is now, go on from there.
                    for line in run.log.splitlines()[-12:]:
                        print(f"      | {line}")
                    here, there = locate(uuid, name, nodes, lab)
        finally:
            remove_guest(lab, name)
            refresh(nodes["node1"], nodes["node2"])
        results[name] = summarize_pair(runs, extra or "idle")
    return results


def locate(uuid: str, name: str, nodes: dict[str, Any], lab: Any) -> tuple[Any, Any]:
    """After a failed run: (node the guest runs on, the other node), inventory refreshed."""
    refresh(nodes["node1"], nodes["node2"])
    running = [
        key
        for key in ("node1", "node2")
        if lab.nodes[key].virsh("domstate", name).stdout.strip() == "running"
    ]
    print(f"      guest {name} now runs on: {', '.join(running) or 'nowhere'}", flush=True)
    if len(running) != 1:
        raise RuntimeError(f"{name} runs on {running or 'no node'}: cannot go on")
    here = nodes[running[0]]
    other = "node2" if running[0] == "node1" else "node1"
    # A job that failed after the guest moved leaves the source copy behind.
    if lab.nodes[other].virsh("vol-delete", "--pool", "default", f"{name}.qcow2").returncode == 0:
        print(f"      removed a leftover {name}.qcow2 on {other}", flush=True)
        refresh(nodes[other])
    from vms.models import VirtualMachine

    row = VirtualMachine.objects.get(uuid=uuid)
    if row.node_id != here.pk or row.vanished_at is not None:
        raise RuntimeError(f"inventory has {name} on {row.node.name}, virsh on {here.name}")
    return here, nodes[other]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize_pair(runs: list[Run], workload: str) -> dict[str, Any]:
    product = [r for r in runs if r.method in ("product", "cli") and r.ok]
    raw = [r for r in runs if r.method == "raw" and r.ok]
    failures = [
        {"method": r.method, "direction": r.direction, "error": r.error, "log": r.log}
        for r in runs
        if not r.ok
    ]
    p_wall = _median([r.wall_s for r in product])
    r_wall = _median([r.wall_s for r in raw])
    goal = 1.05 * r_wall + 0.5
    phase_names = list(dict.fromkeys(k for r in product for k in r.phases))
    phases = {k: _median([r.phases.get(k, 0.0) for r in product]) for k in phase_names}
    return {
        "workload": workload,
        "n_product": len(product),
        "n_raw": len(raw),
        "failures": failures,
        "product_median_s": p_wall,
        "raw_median_s": r_wall,
        "ratio": p_wall / r_wall,
        "goal_s": goal,
        "meets_goal": p_wall <= goal,
        "product_migrate_median_s": _median([r.migrate_s or 0.0 for r in product]),
        "raw_migrate_median_s": _median([r.migrate_s or 0.0 for r in raw]),
        "raw_vol_create_median_s": _median([r.prep_s or 0.0 for r in raw]),
        "product_downtime_ms": [r.downtime_ms for r in product],
        "raw_downtime_ms": [r.downtime_ms for r in raw],
        "product_data_mib": [r.data_mib for r in product],
        "raw_data_mib": [r.data_mib for r in raw],
        "phases_median_s": phases,
        "runs": [{k: v for k, v in asdict(r).items() if k not in ("trace",)} for r in runs],
    }


CONVERGENCE_CASES: list[tuple[str, dict[str, Any]]] = [
    (
        "plain pre-copy (max downtime 50 ms, abort at 45 s)",
        {
            "bandwidth_mib_s": 16,
            "max_downtime_ms": 50,
            "completion_timeout_s": 45,
            "timeout_policy": "abort",
        },
    ),
    (
        "convergence policy (max downtime 3000 ms, abort at 120 s)",
        {
            "bandwidth_mib_s": 16,
            "max_downtime_ms": 3000,
            "completion_timeout_s": 120,
            "timeout_policy": "abort",
        },
    ),
    (
        "auto-converge + policy (max downtime 500 ms, abort at 60 s)",
        {
            "bandwidth_mib_s": 16,
            "max_downtime_ms": 500,
            "auto_converge": True,
            "completion_timeout_s": 60,
            "timeout_policy": "abort",
        },
    ),
]


def bench_convergence(lab: Any, nodes: dict[str, Any]) -> list[dict[str, Any]]:
    name = "bmfast"
    extra = "dirty=32 counter=1"
    print(f"\n[2] {name}: 192 MiB RAM, 64 MiB qcow2, {extra}, bandwidth 16 MiB/s", flush=True)
    uuid = boot(lab, lab.nodes["node1"], name, memory_mib=192, disk_mib=64, extra=extra)
    refresh(nodes["node1"], nodes["node2"])
    time.sleep(3)
    here, there = nodes["node1"], nodes["node2"]
    out = []
    try:
        for label, options in CONVERGENCE_CASES:
            run = product_migration(uuid, name, here, there, options)
            _print_run(run)
            for line in run.log.splitlines():
                if "convergence:" in line or "raised" in line or "aborted" in line:
                    print(f"      {line}")
            if not run.ok and "aborted" not in run.status:
                for line in run.log.splitlines()[-12:]:
                    print(f"      | {line}")
            dirty = [t["dirty_mib_s"] for t in run.trace if t["dirty_mib_s"]]
            out.append(
                {
                    "case": label,
                    "options": options,
                    "converged": run.ok,
                    "status": run.status,
                    "wall_s": run.wall_s,
                    "migrate_s": run.migrate_s,
                    "downtime_ms": run.downtime_ms,
                    "data_mib": run.data_mib,
                    "error": run.error,
                    "max_dirty_mib_s": max(dirty) if dirty else None,
                    "median_dirty_mib_s": _median(dirty) if dirty else None,
                    "last_iteration": max((t["iteration"] or 0) for t in run.trace)
                    if run.trace
                    else None,
                    "final_downtime_target_ms": run.trace[-1]["downtime_target_ms"]
                    if run.trace
                    else None,
                    "convergence_log": [
                        line
                        for line in run.log.splitlines()
                        if "convergence:" in line or "max downtime" in line
                    ],
                    "trace": run.trace,
                    "log": run.log,
                }
            )
            if run.ok:
                here, there = there, here
            else:
                refresh(here, there)
    finally:
        remove_guest(lab, name)
    return out


# --- report ----------------------------------------------------------------------


def report(payload: dict[str, Any]) -> str:
    lines = [
        "| guest | product median | raw median | ratio | goal ≤ 1.05×raw+0.5 s | "
        "libvirt part (product / raw) | downtime product (ms) | downtime raw (ms) |",
        "|---|---:|---:|---:|---|---|---|---|",
    ]
    for name, r in payload["pairs"].items():
        lines.append(
            f"| {name} ({r['workload']}) | {r['product_median_s']:.2f} s | "
            f"{r['raw_median_s']:.2f} s | {r['ratio']:.2f}× | "
            f"{r['goal_s']:.2f} s: {'pass' if r['meets_goal'] else 'FAIL'} | "
            f"{r['product_migrate_median_s']:.2f} / {r['raw_migrate_median_s']:.2f} s "
            f"(+ vol-create {r['raw_vol_create_median_s']:.2f} s) | "
            f"{', '.join(str(d) for d in r['product_downtime_ms'])} | "
            f"{', '.join(str(d) for d in r['raw_downtime_ms'])} |"
        )
    for name, r in payload["pairs"].items():
        lines += ["", f"{name}: {r['n_product']} product and {r['n_raw']} raw runs succeeded"]
        lines += [f"- FAILED {f['method']} {f['direction']}: {f['error']}" for f in r["failures"]]
        lines += ["", f"Product job phases, {name} (median s):", ""]
        lines += [f"- {k}: {v:.3f}" for k, v in r["phases_median_s"].items()]
    if payload.get("convergence"):
        lines += [
            "",
            "| case | result | wall | libvirt part | downtime | data | dirty rate (median) |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for c in payload["convergence"]:
            lines.append(
                f"| {c['case']} | {'converged' if c['converged'] else c['status']} | "
                f"{c['wall_s']:.1f} s | "
                f"{c['migrate_s'] if c['migrate_s'] is not None else '—'} s | "
                f"{c['downtime_ms'] if c['downtime_ms'] is not None else '—'} ms | "
                f"{c['data_mib'] if c['data_mib'] is not None else '—'} MiB | "
                f"{c['median_dirty_mib_s']} MiB/s |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per guest (4 runs each)")
    parser.add_argument("--skip-convergence", action="store_true", help="only benchmark 1")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument(
        "--arm",
        choices=("product", "cli"),
        default="product",
        help="product: the job in this process; cli: `manage.py migratevm --wait` end to end",
    )
    parser.add_argument("--profile-cli", type=Path, help="cli arm: cProfile files to this dir")
    args = parser.parse_args(argv)
    if args.profile_cli:
        global PROFILE_DIR  # noqa: PLW0603 - a run-wide switch of this script
        PROFILE_DIR = args.profile_cli
        PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        print("bench.migration needs root (it builds the namespaced libvirt lab)")
        return 2
    from tests.lab.lab import Lab

    data_dir = setup(Lab().key_path)
    started = time.monotonic()
    try:
        from nodes.hypervisor import close_all

        machine = _common.machine()
        with lab_session() as lab:
            print(f"lab up after {time.monotonic() - started:.0f} s", flush=True)
            nodes = {name: register(lab.nodes[name]) for name in ("node1", "node2")}
            payload: dict[str, Any] = {"machine": machine, "rounds": args.rounds}
            payload["arm"] = args.arm
            payload["pairs"] = bench_product_vs_raw(lab, nodes, args.rounds, args.arm)
            if not args.skip_convergence:
                payload["convergence"] = bench_convergence(lab, nodes)
            close_all()
        payload["total_s"] = time.monotonic() - started
        print(
            f"\n## Migration ({machine['date']}; {machine['cpu']}; libvirt {machine['libvirt']})\n"
        )
        print(report(payload))
        print(f"\ntotal {payload['total_s']:.0f} s")
        _common.write_json(args.json, payload)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
