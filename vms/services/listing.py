"""Read models for pages: grouping the stored inventory by node."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from nodes.models import Node
from vms.models import VirtualMachine


@dataclass
class NodeInventory:
    node: Node
    running: list[VirtualMachine] = field(default_factory=list)
    stopped: list[VirtualMachine] = field(default_factory=list)

    @property
    def vcpus_running(self) -> int:
        return sum(vm.vcpus for vm in self.running)

    @property
    def memory_running_mib(self) -> int:
        return sum(vm.memory_mib for vm in self.running)


def inventory_by_node() -> list[NodeInventory]:
    """Every node with its present VMs split into running and stopped: two queries."""
    groups = {node.pk: NodeInventory(node) for node in Node.objects.order_by("name")}
    vms = (
        VirtualMachine.objects.present()
        .only(
            "uuid",
            "name",
            "state",
            "vcpus",
            "memory_mib",
            "persistent",
            "vnc_port",
            "vnc_listen",
            "observed_at",
            "vanished_at",
            "node_id",
        )
        .order_by("name")
    )
    for vm in vms:
        group = groups.get(vm.node_id)
        if group is None:
            continue
        vm.node = group.node  # avoid one query per VM when building VNC links
        (group.running if vm.is_active else group.stopped).append(vm)
    return list(groups.values())


def inventory_version(groups: list[NodeInventory]) -> str:
    """A short digest of what the list shows (VMs, states, nodes' status).

    The page polls it and re-renders only when it changes; observation times are
    left out so a refresh that found nothing new does not redraw the page. Built
    from the groups already loaded: no extra query.
    """
    digest = hashlib.sha256()
    for group in groups:
        node = group.node
        digest.update(repr((node.pk, node.name, node.status_label, node.last_error)).encode())
        for vm in (*group.running, *group.stopped):
            row = (vm.uuid, vm.name, vm.state, vm.vcpus, vm.memory_mib, vm.vnc_port)
            digest.update(repr(row).encode())
    return digest.hexdigest()[:16]
