"""One sampling cycle for a node: one bulk stats call, then one short write.

The hypervisor call happens outside any transaction; the write is one
transaction with a bulk insert of every running VM's sample, the node's sample and
the node's cursor (the counters the next cycle needs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import transaction

from nodes.hypervisor import HypervisorError, NodeCounters, node_stats
from nodes.hypervisor.states import VMState
from nodes.models import Node
from stats.models import NodeSample, SamplingCursor, VmSample
from stats.services.rates import (
    counters_of,
    host_counters_of,
    node_figures,
    rate,
    vm_figures,
)
from vms.models import VirtualMachine

log = logging.getLogger(__name__)

# Counters older than this many intervals are not trusted for rates: across a long
# gap a restart could go unnoticed (the new counter may have passed the old one).
MAX_GAP_INTERVALS = 10


@dataclass(frozen=True)
class SampleResult:
    node: str
    ok: bool
    samples: int = 0
    error: str = ""


def sample_node(node: Node) -> SampleResult:
    """Sample ``node`` once; a node that cannot be reached writes nothing."""
    try:
        snapshot = node_stats(node.uri)
    except HypervisorError as exc:
        log.warning("stats of %s failed: %s", node.name, exc.message)
        return SampleResult(node=node.name, ok=False, error=exc.message)
    return record_snapshot(node, snapshot)


def _usable_cursor(node: Node, taken_at: float) -> SamplingCursor | None:
    cursor = SamplingCursor.objects.filter(node=node).first()
    if cursor is None:
        return None
    elapsed = taken_at - cursor.taken_at
    if elapsed <= 0 or elapsed > MAX_GAP_INTERVALS * settings.KVMMGR_STATS_INTERVAL:
        return None
    return cursor


def record_snapshot(node: Node, snapshot: NodeCounters) -> SampleResult:
    """Store one snapshot: a sample per running VM known to the inventory, the node's.

    Rates need the previous counters of the same domain on the same node; a VM
    that just arrived (migrated, started) gets its first rates on the next cycle,
    while its history continues under the same VM id.
    """
    cursor = _usable_cursor(node, snapshot.taken_at)
    elapsed = snapshot.taken_at - cursor.taken_at if cursor is not None else 0.0
    previous: dict[str, list[int | None]] = cursor.counters if cursor is not None else {}
    running = [d for d in snapshot.domains if d.state == VMState.RUNNING]
    known = {
        str(uuid): (pk, vcpus)
        for uuid, pk, vcpus in VirtualMachine.objects.filter(
            uuid__in=[d.uuid for d in running]
        ).values_list("uuid", "pk", "vcpus")
    }
    at = datetime.fromtimestamp(snapshot.taken_at, tz=UTC)
    rows: list[VmSample] = []
    guest_cpu: list[float] = []
    for domain in running:
        vm = known.get(domain.uuid)
        if vm is None:
            continue  # not in the inventory yet: the next refresh adds it
        before = previous.get(domain.uuid)
        figures = vm_figures(domain, before, elapsed, fallback_vcpus=vm[1])
        rows.append(VmSample(vm_id=vm[0], node_id=node.pk, at=at, **figures))
        cpu = rate(domain.cpu_time_ns, before[0] if before else None, elapsed)
        if cpu is not None:
            guest_cpu.append(cpu)
    node_row = NodeSample(
        node_id=node.pk,
        at=at,
        **node_figures(
            snapshot.host,
            cursor.host if cursor is not None else None,
            running,
            sum(guest_cpu) if guest_cpu else None,
        ),
    )
    with transaction.atomic():
        VmSample.objects.bulk_create(rows, batch_size=500)
        node_row.save(force_insert=True)
        SamplingCursor.objects.update_or_create(
            node=node,
            defaults={
                "taken_at": snapshot.taken_at,
                "host": host_counters_of(snapshot.host),
                "counters": {d.uuid: counters_of(d) for d in running},
            },
        )
    return SampleResult(node=node.name, ok=True, samples=len(rows))
