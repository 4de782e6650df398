"""Stats sampling on a real libvirtd + qemu (TCG): a busy guest vs an idle one.

One bulk ``getAllDomainStats`` call per cycle through the product's adapter and
service; the busy guest (``dirty=N`` rewrites N MiB of RAM every second, which
burns CPU under TCG) must show clearly more CPU than the idle one.
"""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db.models import Max
from django.utils import timezone

from nodes.models import Node
from nodes.services import registry
from stats.models import NodeSample, VmSample
from stats.services import sampling
from tests.lab.lab import Lab
from tests.lab.node import LabNode
from tests.support.factories import actor
from vms.models import VirtualMachine
from vms.services import inventory

CYCLES = 6
PAUSE = 2.0


@pytest.mark.django_db
def test_busy_guest_uses_clearly_more_cpu_than_an_idle_one(
    manager_ssh: Path, lab: Lab, lab_node: LabNode
) -> None:
    names = {"idle": "statidle", "busy": "statbusy"}
    for name in names.values():
        lab.remove_guest(name, lab_node)
    try:
        idle, _ = lab.boot_guest(lab_node, names["idle"], timeout=120)
        busy, _ = lab.boot_guest(lab_node, names["busy"], timeout=120, cmdline_extra="dirty=24")
        node = registry.add_node(actor=actor(), name="node1", uri=lab_node.uri)
        assert inventory.refresh_node(node).ok
        node = Node.objects.get(pk=node.pk)
        # Let the busy loop get going after boot.
        time.sleep(3)
        for _ in range(CYCLES):
            result = sampling.sample_node(node)
            assert result.ok, result.error
            assert result.samples >= 2
            time.sleep(PAUSE)

        def cpu_of(uuid: str) -> list[float]:
            vm = VirtualMachine.objects.get(uuid=uuid)
            values = VmSample.objects.filter(vm=vm).values_list("cpu_pct", flat=True)
            return [v for v in values if v is not None]

        idle_cpu, busy_cpu = cpu_of(idle.uuid), cpu_of(busy.uuid)
        assert len(idle_cpu) == len(busy_cpu) == CYCLES - 1  # the first cycle has no rates
        idle_mean, busy_mean = statistics.mean(idle_cpu), statistics.mean(busy_cpu)
        print(f"CPU %: idle {idle_mean:.1f} {idle_cpu}, busy {busy_mean:.1f} {busy_cpu}")
        # Measured here: idle ~0.7 %, busy ~5 % (dd of 24 MiB then sleep 1 s, under TCG).
        assert busy_mean > idle_mean + 2, (idle_cpu, busy_cpu)
        assert busy_mean > 3 * max(idle_mean, 0.3), (idle_cpu, busy_cpu)
        assert min(busy_cpu) > statistics.median(idle_cpu), (idle_cpu, busy_cpu)

        # Real qemu reports balloon and block/interface groups: gauges and rates exist.
        sample = VmSample.objects.filter(vm__uuid=busy.uuid).order_by("-at").first()
        assert sample is not None
        assert sample.mem_used_mib is not None and sample.mem_used_mib > 0
        assert sample.mem_pct is not None and 0 < sample.mem_pct <= 100
        node_sample = NodeSample.objects.filter(node=node).order_by("-at").first()
        assert node_sample is not None
        assert node_sample.cpu_pct is not None and node_sample.running_vms >= 2
        assert node_sample.mem_total_mib and node_sample.mem_used_mib
        last = VmSample.objects.aggregate(last=Max("at"))["last"]
        assert last is not None and timezone.now() - last < timedelta(seconds=30)
    finally:
        for name in names.values():
            lab.remove_guest(name, lab_node)
