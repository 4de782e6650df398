"""Adding, changing and removing nodes; every path validates before it saves."""

from __future__ import annotations

from django.db import transaction

from nodes.models import Node, VirtType
from vms.models import VirtualMachine


def _enqueue_refresh(node_id: int) -> None:
    from nodes.tasks import refresh_node

    transaction.on_commit(lambda: refresh_node.delay(node_id))


def add_node(
    *,
    name: str,
    uri: str,
    migration_address: str = "",
    enabled: bool = True,
    virt_type: str = VirtType.AUTO,
) -> Node:
    """Validate and save a node, then queue its first inventory refresh.

    Raises ``django.core.exceptions.ValidationError`` with per-field messages;
    nothing is saved in that case.
    """
    node = Node(
        name=name.strip(),
        uri=uri.strip(),
        migration_address=migration_address.strip(),
        enabled=enabled,
        virt_type=virt_type,
    )
    node.full_clean()
    with transaction.atomic():
        node.save()
        if enabled:
            _enqueue_refresh(node.pk)
    return node


def update_node(node: Node, **changes: object) -> Node:
    """Apply changes to a node after validating the whole result."""
    allowed = {"name", "uri", "migration_address", "enabled", "virt_type"}
    unknown = set(changes) - allowed
    if unknown:
        raise TypeError(f"cannot change {', '.join(sorted(unknown))}")
    uri_changed = "uri" in changes and changes["uri"] != node.uri
    for key, value in changes.items():
        setattr(node, key, value.strip() if isinstance(value, str) else value)
    node.full_clean()
    with transaction.atomic():
        if uri_changed:
            # Observations of the old URI say nothing about the new one.
            node.last_seen = None
            node.last_error = ""
        node.save()
        if node.enabled:
            _enqueue_refresh(node.pk)
    return node


def remove_node(node: Node) -> int:
    """Forget a node and its inventory. Nothing on the host itself is touched.

    Returns how many inventory rows went with it.
    """
    with transaction.atomic():
        removed, _ = VirtualMachine.objects.filter(node=node).delete()
        node.delete()
    return removed


def request_refresh(nodes: list[Node] | None = None) -> int:
    """Queue an inventory refresh of the given (default: all enabled) nodes."""
    targets = nodes if nodes is not None else list(Node.objects.filter(enabled=True))
    for node in targets:
        _enqueue_refresh(node.pk)
    return len(targets)
