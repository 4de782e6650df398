"""Resource counters of a node and its running domains, from one bulk libvirt call.

``node_stats(uri)`` makes one ``getAllDomainStats`` call for every active domain
(state, cpu-total, vcpu, balloon, block, interface groups) plus the host's own CPU
and memory counters, and returns plain dataclasses of *cumulative counters*. Rates
and percentages need two snapshots; the stats service computes them.

``parse_domain_record`` is pure so crafted stats dicts (tests, benchmarks) go
through exactly the code a real node's records do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import libvirt

from nodes.hypervisor.connection import connection_for
from nodes.hypervisor.states import VMState, state_from_libvirt

_STATS_GROUPS = (
    libvirt.VIR_DOMAIN_STATS_STATE
    | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
    | libvirt.VIR_DOMAIN_STATS_VCPU
    | libvirt.VIR_DOMAIN_STATS_BALLOON
    | libvirt.VIR_DOMAIN_STATS_BLOCK
    | libvirt.VIR_DOMAIN_STATS_INTERFACE
)
# ACTIVE: shut-off domains have no counters. NOWAIT: a domain busy in a job (a
# migration) reports what it can at once instead of blocking the whole call.
_STATS_FLAGS = (
    libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
    | libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
)
_UNSUPPORTED = frozenset({libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED})


@dataclass(frozen=True)
class DomainCounters:
    """One domain's counters at one instant. ``None``: the group was not reported."""

    uuid: str
    name: str
    state: VMState
    cpu_time_ns: int | None = None
    vcpus: int | None = None
    # Memory given to the guest now (balloon.current); what it really uses, and the
    # amount that use is a share of (see ``_memory_used``).
    memory_current_kib: int | None = None
    memory_used_kib: int | None = None
    memory_total_kib: int | None = None
    block_rd_bytes: int | None = None
    block_wr_bytes: int | None = None
    block_rd_reqs: int | None = None
    block_wr_reqs: int | None = None
    net_rx_bytes: int | None = None
    net_tx_bytes: int | None = None


@dataclass(frozen=True)
class HostCounters:
    """The host's CPU time counters (ns, all CPUs) and memory, where the driver has them."""

    cpus: int
    memory_total_kib: int
    cpu_busy_ns: int | None = None
    cpu_total_ns: int | None = None
    memory_free_kib: int | None = None


@dataclass(frozen=True)
class NodeCounters:
    """A snapshot: wall-clock time of the call, the host, and every active domain."""

    taken_at: float
    host: HostCounters
    domains: list[DomainCounters]


def _int(raw: dict[str, Any], key: str) -> int | None:
    value = raw.get(key)
    return int(value) if isinstance(value, int | float) else None


def _sum_indexed(raw: dict[str, Any], group: str, field: str) -> int | None:
    """Sum ``group.N.field`` over ``group.count`` devices; None if none reported it."""
    count = _int(raw, f"{group}.count")
    if not count:
        return None
    values = [_int(raw, f"{group}.{index}.{field}") for index in range(count)]
    present = [value for value in values if value is not None]
    return sum(present) if present else None


def _memory_used(raw: dict[str, Any]) -> tuple[int | None, int | None]:
    """(used, of) in KiB: the guest's own view when its balloon driver reports it
    (available − usable, of available), else the qemu process's RSS, else the balloon
    size, both of the domain's maximum (or current) memory."""
    available = _int(raw, "balloon.available")
    usable = _int(raw, "balloon.usable")
    if available is not None and usable is not None and available >= usable:
        return available - usable, available
    ceiling = _int(raw, "balloon.maximum") or _int(raw, "balloon.current")
    rss = _int(raw, "balloon.rss")
    if rss is not None:
        return rss, ceiling
    return _int(raw, "balloon.current"), ceiling


def parse_domain_record(uuid: str, name: str, raw: dict[str, Any]) -> DomainCounters:
    """One ``getAllDomainStats`` record → our counters; missing groups stay ``None``."""
    state_code = _int(raw, "state.state")
    memory_used, memory_total = _memory_used(raw)
    return DomainCounters(
        uuid=uuid,
        name=name,
        state=state_from_libvirt(state_code) if state_code is not None else VMState.UNKNOWN,
        cpu_time_ns=_int(raw, "cpu.time"),
        vcpus=_int(raw, "vcpu.current"),
        memory_current_kib=_int(raw, "balloon.current"),
        memory_used_kib=memory_used,
        memory_total_kib=memory_total,
        block_rd_bytes=_sum_indexed(raw, "block", "rd.bytes"),
        block_wr_bytes=_sum_indexed(raw, "block", "wr.bytes"),
        block_rd_reqs=_sum_indexed(raw, "block", "rd.reqs"),
        block_wr_reqs=_sum_indexed(raw, "block", "wr.reqs"),
        net_rx_bytes=_sum_indexed(raw, "net", "rx.bytes"),
        net_tx_bytes=_sum_indexed(raw, "net", "tx.bytes"),
    )


def _host_counters(conn: libvirt.virConnect) -> HostCounters:
    info = conn.getInfo()  # [arch, memory MiB, cpus, mhz, numa nodes, sockets, cores, threads]
    busy = total = free = None
    memory_total = int(info[1]) * 1024
    try:
        cpu = conn.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS, 0)
        idle = cpu.get("idle", 0) + cpu.get("iowait", 0)
        busy = cpu.get("kernel", 0) + cpu.get("user", 0)
        total = busy + idle
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in _UNSUPPORTED:
            raise
    try:
        memory = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS, 0)
        free = memory.get("free", 0) + memory.get("buffers", 0) + memory.get("cached", 0)
        # Free and total from the same source: getInfo's figure can differ (NUMA, cgroups).
        memory_total = int(memory.get("total", memory_total))
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in _UNSUPPORTED:
            raise
    return HostCounters(
        cpus=int(info[2]),
        memory_total_kib=memory_total,
        cpu_busy_ns=busy,
        cpu_total_ns=total,
        memory_free_kib=free,
    )


def node_stats(uri: str) -> NodeCounters:
    """Counters of the node and all its active domains: one bulk domain-stats call.

    Raises ``HypervisorError`` (through ``connection_for``) when the node cannot be
    reached or the call fails; nothing partial is returned.
    """
    with connection_for(uri) as conn:
        host = _host_counters(conn)
        taken_at = time.time()
        records = conn.getAllDomainStats(_STATS_GROUPS, _STATS_FLAGS)
        # The call's midpoint: the counters were read somewhere inside it.
        taken_at = (taken_at + time.time()) / 2
        domains = [parse_domain_record(dom.UUIDString(), dom.name(), raw) for dom, raw in records]
    return NodeCounters(taken_at=taken_at, host=host, domains=domains)
