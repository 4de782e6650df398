"""The VM inventory: what the manager last observed on each node."""

from __future__ import annotations

from django.db import models

from nodes.models import Node
from vms.choices import VMState


class VirtualMachineQuerySet(models.QuerySet["VirtualMachine"]):
    def present(self) -> VirtualMachineQuerySet:
        return self.filter(vanished_at__isnull=True)


class VirtualMachine(models.Model):
    """One libvirt domain as last observed by the inventory refresh.

    A VM is identified by its libvirt UUID across nodes, so a migrated VM keeps
    its row (and history); ``node`` is where it was last seen. A domain that is
    no longer on its node is marked with ``vanished_at`` rather than deleted.
    """

    uuid = models.UUIDField(unique=True)
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="vms")
    name = models.CharField(max_length=255)
    state = models.CharField(max_length=16, choices=VMState.choices, default=VMState.UNKNOWN)
    vcpus = models.PositiveIntegerField(default=0)
    memory_mib = models.PositiveBigIntegerField(default=0)
    persistent = models.BooleanField(default=True)
    vnc_port = models.PositiveIntegerField(null=True, blank=True)
    vnc_listen = models.CharField(max_length=255, blank=True)
    observed_at = models.DateTimeField()
    vanished_at = models.DateTimeField(null=True, blank=True)

    objects = VirtualMachineQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["node", "vanished_at", "name"], name="vm_node_present_name")
        ]

    def __str__(self) -> str:
        return f"{self.name} on {self.node_id}"

    @property
    def is_active(self) -> bool:
        return self.state in VMState.active()

    @property
    def vnc_url(self) -> str:
        """A ``vnc://`` link for the console, only while the VM runs with a port."""
        if not self.is_active or not self.vnc_port or self.vanished_at:
            return ""
        host = self.vnc_listen
        if not host or host in {"0.0.0.0", "::", "127.0.0.1", "::1", "localhost"}:
            # Listening on all addresses or loopback: reach it through the node's own address.
            host = self.node.console_host
        if ":" in host:
            host = f"[{host}]"
        return f"vnc://{host}:{self.vnc_port}"
