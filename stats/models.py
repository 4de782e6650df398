"""Stored resource figures: raw samples, per-minute/per-hour rollups, sampling cursors.

Samples are keyed by ``VirtualMachine`` id, and a VM's row follows it across nodes
(it is keyed by libvirt UUID), so a migrated VM keeps one continuous history; ``node``
only records where each sample was taken.

Retention (``stats.services.retention``): raw samples for ``KVMMGR_STATS_RAW_RETENTION``,
minute rollups for ``KVMMGR_STATS_MINUTE_RETENTION``, hour rollups for
``KVMMGR_STATS_HOUR_RETENTION``: the tables stay bounded whatever the uptime.
"""

from __future__ import annotations

from django.db import models

from nodes.models import Node
from vms.models import VirtualMachine

# Figures stored per VM sample. ``None`` where the node did not report the group or
# where the previous counter is missing or went backwards (a new series).
VM_METRICS = (
    "cpu_pct",
    "mem_used_mib",
    "mem_pct",
    "disk_rd_bps",
    "disk_wr_bps",
    "disk_rd_iops",
    "disk_wr_iops",
    "net_rx_bps",
    "net_tx_bps",
)
NODE_METRICS = ("cpu_pct", "mem_used_mib", "mem_total_mib", "mem_pct", "running_vms")
AGGREGATES = ("min", "avg", "max")


class Resolution(models.IntegerChoices):
    MINUTE = 60, "per minute"
    HOUR = 3600, "per hour"


def _metric() -> models.FloatField:
    return models.FloatField(null=True, blank=True)


class VmSample(models.Model):
    """One VM's figures at one sampling instant (raw, kept for the raw window)."""

    # No separate FK indexes: (vm, at) serves the VM's queries, and every index
    # costs each 1,000-row insert.
    vm = models.ForeignKey(
        VirtualMachine, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    node = models.ForeignKey(
        Node, null=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    at = models.DateTimeField()
    cpu_pct = _metric()
    mem_used_mib = _metric()
    mem_pct = _metric()
    disk_rd_bps = _metric()
    disk_wr_bps = _metric()
    disk_rd_iops = _metric()
    disk_wr_iops = _metric()
    net_rx_bps = _metric()
    net_tx_bps = _metric()

    class Meta:
        indexes = [
            # The thesis's (VMname, DateTime): "one VM, recent window".
            models.Index(fields=["vm", "at"], name="vmsample_vm_at"),
            models.Index(fields=["at"], name="vmsample_at"),
        ]

    def __str__(self) -> str:
        return f"VM {self.vm_id} at {self.at:%Y-%m-%d %H:%M:%S}"


class NodeSample(models.Model):
    """A node's totals at one sampling instant (raw)."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="+", db_index=False)
    at = models.DateTimeField()
    cpu_pct = _metric()
    mem_used_mib = _metric()
    mem_total_mib = _metric()
    mem_pct = _metric()
    running_vms = _metric()

    class Meta:
        indexes = [
            models.Index(fields=["node", "at"], name="nodesample_node_at"),
            models.Index(fields=["at"], name="nodesample_at"),
        ]

    def __str__(self) -> str:
        return f"node {self.node_id} at {self.at:%Y-%m-%d %H:%M:%S}"


class VmRollup(models.Model):
    """min/avg/max of a VM's samples over one minute or one hour starting at ``start``."""

    vm = models.ForeignKey(
        VirtualMachine, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    resolution = models.PositiveIntegerField(choices=Resolution.choices)
    start = models.DateTimeField()
    samples = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["vm", "resolution", "start"], name="vmrollup_vm_res_start"
            )
        ]
        indexes = [models.Index(fields=["resolution", "start"], name="vmrollup_res_start")]

    def __str__(self) -> str:
        return f"VM {self.vm_id} {self.resolution} s from {self.start:%Y-%m-%d %H:%M}"


class NodeRollup(models.Model):
    """min/avg/max of a node's totals over one minute or one hour."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="+", db_index=False)
    resolution = models.PositiveIntegerField(choices=Resolution.choices)
    start = models.DateTimeField()
    samples = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["node", "resolution", "start"], name="noderollup_node_res_start"
            )
        ]
        indexes = [models.Index(fields=["resolution", "start"], name="noderollup_res_start")]

    def __str__(self) -> str:
        return f"node {self.node_id} {self.resolution} s from {self.start:%Y-%m-%d %H:%M}"


# metric_min / metric_avg / metric_max columns, one triple per metric.
for _model, _metrics in ((VmRollup, VM_METRICS), (NodeRollup, NODE_METRICS)):
    for _name in _metrics:
        for _agg in AGGREGATES:
            _model.add_to_class(f"{_name}_{_agg}", _metric())


class SamplingCursor(models.Model):
    """The previous counters of a node, so the next cycle can turn them into rates.

    One row per node, rewritten each cycle (one UPDATE instead of one per VM).
    ``counters`` maps domain UUID → ``[cpu_time_ns, block_rd_bytes, block_wr_bytes,
    block_rd_reqs, block_wr_reqs, net_rx_bytes, net_tx_bytes]``; ``host`` holds
    ``[cpu_busy_ns, cpu_total_ns]``.
    """

    node = models.OneToOneField(Node, on_delete=models.CASCADE, primary_key=True)
    taken_at = models.FloatField(help_text="Unix time of the snapshot")
    host = models.JSONField(default=list)
    counters = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"cursor of node {self.node_id}"
