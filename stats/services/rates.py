"""Turning two snapshots of cumulative counters into rates and percentages.

Pure functions on the adapter's dataclasses, so crafted stats dicts test them fully.
A counter that is missing on either side, or that went backwards (the VM restarted
or migrated: its qemu process is new), yields ``None``: a gap that starts a new
series, never a negative spike.
"""

from __future__ import annotations

from nodes.hypervisor import DomainCounters, HostCounters

# Order of a domain's counters in ``SamplingCursor.counters``.
COUNTER_FIELDS = (
    "cpu_time_ns",
    "block_rd_bytes",
    "block_wr_bytes",
    "block_rd_reqs",
    "block_wr_reqs",
    "net_rx_bytes",
    "net_tx_bytes",
)
KIB_PER_MIB = 1024


def counters_of(domain: DomainCounters) -> list[int | None]:
    return [getattr(domain, name) for name in COUNTER_FIELDS]


def rate(current: int | None, previous: int | None, elapsed: float) -> float | None:
    """Per-second increase, or None when it cannot be known (missing, reset, no time)."""
    if current is None or previous is None or elapsed <= 0 or current < previous:
        return None
    return (current - previous) / elapsed


def _pct(part: float | None, whole: float | None) -> float | None:
    if part is None or not whole:
        return None
    return max(0.0, min(100.0, 100.0 * part / whole))


def vm_figures(
    domain: DomainCounters,
    previous: list[int | None] | None,
    elapsed: float,
    *,
    fallback_vcpus: int,
) -> dict[str, float | None]:
    """A VmSample's metric columns from this snapshot and the previous counters."""
    prev = dict(zip(COUNTER_FIELDS, previous, strict=False)) if previous else {}

    def per_second(name: str) -> float | None:
        return rate(getattr(domain, name), prev.get(name), elapsed)

    cpu_ns_per_s = per_second("cpu_time_ns")
    vcpus = domain.vcpus or fallback_vcpus or 1
    # CPU time per wall time, as a share of all the VM's vCPUs (100 % = every vCPU busy).
    cpu_pct = None if cpu_ns_per_s is None else _pct(cpu_ns_per_s / 1e9, vcpus)
    used_kib = domain.memory_used_kib
    return {
        "cpu_pct": cpu_pct,
        "mem_used_mib": None if used_kib is None else used_kib / KIB_PER_MIB,
        "mem_pct": _pct(used_kib, domain.memory_total_kib),
        "disk_rd_bps": per_second("block_rd_bytes"),
        "disk_wr_bps": per_second("block_wr_bytes"),
        "disk_rd_iops": per_second("block_rd_reqs"),
        "disk_wr_iops": per_second("block_wr_reqs"),
        "net_rx_bps": per_second("net_rx_bytes"),
        "net_tx_bps": per_second("net_tx_bytes"),
    }


def host_counters_of(host: HostCounters) -> list[int | None]:
    return [host.cpu_busy_ns, host.cpu_total_ns]


def node_figures(
    host: HostCounters,
    previous_host: list[int | None] | None,
    running: list[DomainCounters],
    guest_cpu_ns_per_s: float | None,
) -> dict[str, float | None]:
    """A NodeSample's columns.

    CPU: the host's own busy/total counters where the driver reports them; else the
    guests' CPU time over the host's CPUs. Memory: total − free (with buffers and
    cache counted as free) where reported; else the memory given to running guests.
    """
    cpu_pct: float | None = None
    if previous_host and len(previous_host) == 2:
        busy = rate(host.cpu_busy_ns, previous_host[0], 1.0)
        total = rate(host.cpu_total_ns, previous_host[1], 1.0)
        if busy is not None and total:
            cpu_pct = _pct(busy, total)
    if cpu_pct is None and guest_cpu_ns_per_s is not None:
        cpu_pct = _pct(guest_cpu_ns_per_s / 1e9, host.cpus)
    if host.memory_free_kib is not None:
        used_kib: float | None = max(0, host.memory_total_kib - host.memory_free_kib)
    else:
        given = [d.memory_current_kib for d in running if d.memory_current_kib is not None]
        used_kib = sum(given) if given else None
    return {
        "cpu_pct": cpu_pct,
        "mem_used_mib": None if used_kib is None else used_kib / KIB_PER_MIB,
        "mem_total_mib": host.memory_total_kib / KIB_PER_MIB,
        "mem_pct": _pct(used_kib, host.memory_total_kib),
        "running_vms": float(len(running)),
    }
