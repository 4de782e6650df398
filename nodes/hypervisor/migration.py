"""Live and cold migration through libvirt: flags, parameters, progress, control.

The migration itself is ``migrateToURI3`` on the source domain, peer-to-peer by
default (the source libvirtd opens the destination URI itself). It blocks until
the migration ends, so it runs in a helper thread while the caller polls the
job statistics on the same connection and may steer it (downtime, post-copy,
pause, abort) through the ``MigrationControl`` it is handed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import libvirt

from nodes.hypervisor.connection import connection_for, translate_error
from nodes.hypervisor.errors import HypervisorError

POLL_SECONDS = 0.5
# Compression methods QEMU runs on its multifd channels (VIR_MIGRATE_PARALLEL).
MULTIFD_COMPRESSION = ("zstd", "zlib")
# XBZRLE cache bounds: QEMU's own default, and what we take from the source host at most.
XBZRLE_CACHE_MIN = 64 * 1024 * 1024
XBZRLE_CACHE_MAX = 1024 * 1024 * 1024


def xbzrle_cache_bytes(guest_memory_bytes: int) -> int:
    """An XBZRLE cache for a guest: half its RAM, up to a power of two, within the bounds.

    XBZRLE only helps for a page still in the cache when it is sent again, so the
    cache must hold the guest's working set; QEMU's fixed 64 MiB default misses most
    of it on a bigger guest. QEMU wants a power of two; the cache is source-host RAM
    for the length of the migration, hence the cap.
    """
    want = max(guest_memory_bytes // 2, 1)
    size = 1 << (want - 1).bit_length()
    return max(XBZRLE_CACHE_MIN, min(XBZRLE_CACHE_MAX, size))


@dataclass(frozen=True)
class MigrationRequest:
    """Everything one migration needs; built by the migration service."""

    domain_uuid: str
    domain_name: str
    source_uri: str
    # The URI the *source* libvirtd uses to reach the destination (peer-to-peer).
    dest_uri: str
    # The address qemu and the disk mirror connect to: the destination's migration address.
    dest_address: str
    live: bool = True
    copy_storage: bool = True
    peer_to_peer: bool = True
    persistent: bool = True
    undefine_source: bool = True
    bandwidth_mib_s: int = 0
    auto_converge: bool = False
    # "" (none), "xbzrle", or a multifd method ("zstd", "zlib": needs parallel connections).
    compression: str = ""
    postcopy: bool = False
    parallel_connections: int = 0
    sync_writes: bool = False
    # The plain destination URI shown in the equivalent virsh command.
    display_dest_uri: str = ""
    # The domain's definitions for the destination when they must differ from the
    # source's (media taken out for the move); "" keeps the source's.
    dest_xml: str = ""
    persist_xml: str = ""
    # XBZRLE cache (bytes) when compression is "xbzrle"; 0: sized to the guest when
    # the migration starts (``xbzrle_cache_bytes``).
    xbzrle_cache: int = 0

    @property
    def tcp_uri(self) -> str:
        host = f"[{self.dest_address}]" if ":" in self.dest_address else self.dest_address
        return f"tcp://{host}"

    def __post_init__(self) -> None:
        if self.compression not in ("", "xbzrle", *MULTIFD_COMPRESSION):
            raise ValueError(f"unknown compression method {self.compression!r}")
        if self.compression in MULTIFD_COMPRESSION and not self.parallel_connections:
            raise ValueError(f"{self.compression} compression needs parallel connections")

    def flags(self) -> int:
        flags = libvirt.VIR_MIGRATE_ABORT_ON_ERROR
        if self.live:
            flags |= libvirt.VIR_MIGRATE_LIVE
        else:
            flags |= libvirt.VIR_MIGRATE_OFFLINE
        if self.peer_to_peer:
            flags |= libvirt.VIR_MIGRATE_PEER2PEER
        if self.persistent:
            flags |= libvirt.VIR_MIGRATE_PERSIST_DEST
        if self.undefine_source:
            flags |= libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
        if self.copy_storage and self.live:
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
        if self.auto_converge:
            flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
        if self.compression:
            flags |= libvirt.VIR_MIGRATE_COMPRESSED
        if self.postcopy:
            flags |= libvirt.VIR_MIGRATE_POSTCOPY
        if self.parallel_connections:
            flags |= libvirt.VIR_MIGRATE_PARALLEL
        if self.sync_writes and self.copy_storage and self.live:
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES
        return flags

    def params(self) -> dict[str, object]:
        params: dict[str, object] = {}
        if self.live:
            params[libvirt.VIR_MIGRATE_PARAM_URI] = self.tcp_uri
            if self.copy_storage:
                params[libvirt.VIR_MIGRATE_PARAM_DISKS_URI] = self.tcp_uri
        if self.bandwidth_mib_s:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = self.bandwidth_mib_s
        if self.parallel_connections:
            params[libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] = self.parallel_connections
        if self.dest_xml:
            params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = self.dest_xml
        if self.persist_xml:
            params[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML] = self.persist_xml
        if self.compression:
            params[libvirt.VIR_MIGRATE_PARAM_COMPRESSION] = self.compression
        if self.compression == "xbzrle" and self.xbzrle_cache:
            params[libvirt.VIR_MIGRATE_PARAM_COMPRESSION_XBZRLE_CACHE] = self.xbzrle_cache
        return params

    def virsh_command(self) -> list[str]:
        """The ``virsh migrate`` an admin could run by hand to do the same."""
        argv = ["virsh", "-c", self.source_uri, "migrate", "--verbose"]
        argv += ["--live"] if self.live else ["--offline"]
        if self.peer_to_peer:
            argv.append("--p2p")
        if self.persistent:
            argv.append("--persistent")
        if self.undefine_source:
            argv.append("--undefinesource")
        if self.copy_storage and self.live:
            argv.append("--copy-storage-all")
            if self.sync_writes:
                argv.append("--copy-storage-synchronous-writes")
        if self.auto_converge:
            argv.append("--auto-converge")
        if self.compression:
            argv += ["--compressed", "--comp-methods", self.compression]
            if self.compression == "xbzrle" and self.xbzrle_cache:
                argv += ["--comp-xbzrle-cache", str(self.xbzrle_cache)]
        if self.postcopy:
            argv.append("--postcopy")
        if self.bandwidth_mib_s:
            argv += ["--bandwidth", str(self.bandwidth_mib_s)]
        if self.parallel_connections:
            argv += ["--parallel", "--parallel-connections", str(self.parallel_connections)]
        if self.live:
            argv += ["--migrateuri", self.tcp_uri]
            if self.copy_storage:
                argv += ["--disks-uri", self.tcp_uri]
        # Files holding dest_xml / persist_xml (the job log says what they change).
        if self.dest_xml:
            argv += ["--xml", f"{self.domain_name}-dest.xml"]
        if self.persist_xml:
            argv += ["--persistent-xml", f"{self.domain_name}-persistent.xml"]
        argv += [self.domain_name, self.display_dest_uri or self.dest_uri]
        return argv


@dataclass(frozen=True)
class MigrationStats:
    """One poll of libvirt's job statistics, with our own phase name."""

    phase: str
    elapsed_ms: int = 0
    data_total: int = 0
    data_processed: int = 0
    data_remaining: int = 0
    memory_total: int = 0
    memory_processed: int = 0
    memory_remaining: int = 0
    memory_bps: int = 0
    dirty_rate_pages: int = 0
    page_size: int = 4096
    iteration: int = 0
    disk_total: int = 0
    disk_processed: int = 0
    disk_remaining: int = 0
    disk_bps: int = 0
    expected_downtime_ms: int = 0
    downtime_ms: int | None = None
    postcopy_requests: int = 0
    # Bytes of the non-zero pages sent, before compression: with compression the
    # bytes on the wire (memory_processed) are fewer.
    memory_normal_bytes: int = 0

    @property
    def percent(self) -> int:
        if self.data_total <= 0:
            return 0
        return max(0, min(99, int(100 * self.data_processed / self.data_total)))

    @property
    def dirty_rate_bps(self) -> int:
        return self.dirty_rate_pages * self.page_size

    def as_detail(self) -> dict[str, object]:
        """JSON-safe figures for the job's progress detail."""
        return {
            "phase": self.phase,
            "elapsed_s": round(self.elapsed_ms / 1000, 1),
            "data_processed": self.data_processed,
            "data_remaining": self.data_remaining,
            "data_total": self.data_total,
            "memory_processed": self.memory_processed,
            "memory_remaining": self.memory_remaining,
            "memory_total": self.memory_total,
            "disk_processed": self.disk_processed,
            "disk_remaining": self.disk_remaining,
            "disk_total": self.disk_total,
            "memory_bps": self.memory_bps,
            "disk_bps": self.disk_bps,
            "dirty_rate_bps": self.dirty_rate_bps,
            "iteration": self.iteration,
            "expected_downtime_ms": self.expected_downtime_ms,
        }


def stats_from_libvirt(raw: dict[str, int], *, postcopy_active: bool = False) -> MigrationStats:
    """Name the phase and keep the figures we show, from a ``jobStats()`` dict."""
    memory_processed = int(raw.get("memory_processed", 0))
    disk_remaining = int(raw.get("disk_remaining", 0))
    iteration = int(raw.get("memory_iteration", 0))
    if raw.get("type") == libvirt.VIR_DOMAIN_JOB_COMPLETED:
        phase = "completed"
    elif postcopy_active or raw.get("memory_postcopy_requests"):
        phase = "post-copy"
    elif raw.get("disk_total") and (disk_remaining > 0 or memory_processed == 0):
        phase = "disk copy"
    elif memory_processed or iteration:
        phase = f"memory pre-copy, iteration {max(iteration, 1)}"
    else:
        phase = "setting up"
    return MigrationStats(
        phase=phase,
        elapsed_ms=int(raw.get("time_elapsed", 0)),
        data_total=int(raw.get("data_total", 0)),
        data_processed=int(raw.get("data_processed", 0)),
        data_remaining=int(raw.get("data_remaining", 0)),
        memory_total=int(raw.get("memory_total", 0)),
        memory_processed=memory_processed,
        memory_remaining=int(raw.get("memory_remaining", 0)),
        memory_bps=int(raw.get("memory_bps", 0)),
        dirty_rate_pages=int(raw.get("memory_dirty_rate", 0)),
        page_size=int(raw.get("memory_page_size", 4096) or 4096),
        iteration=iteration,
        disk_total=int(raw.get("disk_total", 0)),
        disk_processed=int(raw.get("disk_processed", 0)),
        disk_remaining=disk_remaining,
        disk_bps=int(raw.get("disk_bps", 0)),
        expected_downtime_ms=int(raw.get("downtime", 0)),
        downtime_ms=int(raw["downtime"])
        if raw.get("type") == libvirt.VIR_DOMAIN_JOB_COMPLETED and "downtime" in raw
        else None,
        postcopy_requests=int(raw.get("memory_postcopy_requests", 0)),
        memory_normal_bytes=int(raw.get("memory_normal_bytes", 0)),
    )


class DomainLeftSource(HypervisorError):
    """A control call found the domain gone from the source: the migration is ending."""


@dataclass
class MigrationControl:
    """Steering a running migration from the poll callback."""

    domain: libvirt.virDomain
    uri: str
    postcopy_started: bool = False
    actions: list[str] = field(default_factory=list)

    def _call(self, what: str, func: Callable[[], object]) -> None:
        try:
            func()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise DomainLeftSource(f"{what}: the domain already left the source") from exc
            raise translate_error(exc, self.uri) from exc
        self.actions.append(what)

    def set_max_downtime(self, ms: int) -> None:
        self._call(f"max downtime {ms} ms", lambda: self.domain.migrateSetMaxDowntime(ms, 0))

    def set_bandwidth(self, mib_s: int) -> None:
        self._call(f"bandwidth {mib_s} MiB/s", lambda: self.domain.migrateSetMaxSpeed(mib_s, 0))

    def start_postcopy(self) -> None:
        self._call("switch to post-copy", lambda: self.domain.migrateStartPostCopy(0))
        self.postcopy_started = True

    def pause_guest(self) -> None:
        self._call("pause guest", self.domain.suspend)

    def abort(self) -> None:
        self._call("abort", self.domain.abortJob)


@dataclass(frozen=True)
class MigrationOutcome:
    last: MigrationStats | None
    wall_seconds: float
    actions: list[str]


class MigrationStuck(HypervisorError):
    """An aborted migration libvirt had not rolled back within the wait (a cut link).

    The source keeps its migration job (and the domain's state-change lock) until
    the link returns: any call on that domain blocks for libvirt's 30 s lock timeout,
    so whoever catches this leaves the settling to the reconciler.
    """


def _params(
    request: MigrationRequest, domain: libvirt.virDomain, control: MigrationControl
) -> dict[str, object]:
    """The request's parameters, with an XBZRLE cache sized to the guest if none was set."""
    params = request.params()
    if request.compression == "xbzrle" and not request.xbzrle_cache:
        try:
            cache = xbzrle_cache_bytes(domain.maxMemory() * 1024)
        except libvirt.libvirtError as exc:
            raise translate_error(exc, request.source_uri) from exc
        params[libvirt.VIR_MIGRATE_PARAM_COMPRESSION_XBZRLE_CACHE] = cache
        control.actions.append(f"xbzrle cache {cache // (1024 * 1024)} MiB")
    return params


def run_migration(
    request: MigrationRequest,
    on_poll: Callable[[MigrationStats, MigrationControl], None],
    *,
    abort_wait_seconds: float = 60.0,
) -> MigrationOutcome:
    """Migrate and poll until it ends; raises ``HypervisorError`` if it did not succeed.

    ``on_poll`` runs about every 0.5 s with the latest statistics; exceptions it
    raises abort the migration (and are re-raised once libvirt has rolled back),
    so a failing caller never leaves a migration running unattended.
    """
    started = time.monotonic()
    with connection_for(request.source_uri) as conn:
        domain = conn.lookupByUUIDString(request.domain_uuid)
        control = MigrationControl(domain, request.source_uri)
        outcome: dict[str, object] = {}
        params = _params(request, domain, control)

        def migrate() -> None:
            try:
                domain.migrateToURI3(request.dest_uri, params, request.flags())
            except libvirt.libvirtError as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=migrate, name="libvirt-migrate", daemon=True)
        thread.start()
        last: MigrationStats | None = None
        poll_error: BaseException | None = None
        while thread.is_alive():
            thread.join(POLL_SECONDS)
            if not thread.is_alive() or poll_error is not None:
                continue
            try:
                raw = domain.jobStats(0)
            except libvirt.libvirtError:
                continue  # the domain may be gone from the source at the very end
            if raw.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
                continue
            last = stats_from_libvirt(raw, postcopy_active=control.postcopy_started)
            try:
                on_poll(last, control)
            except DomainLeftSource:
                # The switch-over happened between the stats and the control call:
                # nothing to steer any more, let migrateToURI3 report the outcome.
                continue
            except BaseException as exc:  # the caller wants out: roll the migration back
                poll_error = exc
                try:
                    domain.abortJob()
                except libvirt.libvirtError:
                    pass
                thread.join(abort_wait_seconds)
                if thread.is_alive():
                    reason = getattr(exc, "message", "") or str(exc) or type(exc).__name__
                    raise MigrationStuck(
                        f"{reason}; {request.domain_name} was aborted but libvirt had not "
                        f"finished rolling back {abort_wait_seconds:g} s later (a cut link "
                        "keeps its job 'cancelled' until the link returns): the VM keeps "
                        "running on the source, and what is left on the destination is "
                        "removed once it answers",
                        retryable=True,
                    ) from exc
        if poll_error is not None:
            raise poll_error
        if "error" in outcome:
            raise translate_error(outcome["error"], request.source_uri)  # type: ignore[arg-type]
    return MigrationOutcome(
        last=last, wall_seconds=time.monotonic() - started, actions=control.actions
    )


def completed_stats(uri: str, domain_uuid: str) -> MigrationStats | None:
    """The finished migration's statistics as the destination recorded them."""
    with connection_for(uri) as conn:
        try:
            domain = conn.lookupByUUIDString(domain_uuid)
            raw = domain.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        except libvirt.libvirtError:
            return None
    if not raw or raw.get("type") == libvirt.VIR_DOMAIN_JOB_NONE:
        return None
    return stats_from_libvirt(raw)
