"""Adding, changing and removing nodes; every path validates before it saves."""

from __future__ import annotations

from django.db import transaction

from kvmmgr import audit
from kvmmgr.access import Actor, Permission
from nodes.models import Node, VirtType
from vms.models import VirtualMachine


def _enqueue_refresh(node_id: int) -> None:
    from nodes.tasks import refresh_node

    transaction.on_commit(lambda: refresh_node.delay(node_id))


def _enqueue_trust(node: Node) -> None:
    """Install node-to-node migration trust for a qemu+ssh node, after commit."""
    if not node.uri.startswith("qemu+ssh://"):
        return
    from nodes.tasks import establish_trust

    node_id = node.pk
    transaction.on_commit(lambda: establish_trust.delay(node_id))


def add_node(
    *,
    actor: Actor,
    name: str,
    uri: str,
    migration_address: str = "",
    migration_ssh_port: int | None = None,
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
        migration_ssh_port=migration_ssh_port,
        enabled=enabled,
        virt_type=virt_type,
    )
    params = {
        "uri": node.uri,
        "migration_address": node.migration_address,
        "migration_ssh_port": node.migration_ssh_port,
        "enabled": enabled,
        "virt_type": virt_type,
    }
    with audit.action(actor, Permission.NODE_MANAGE, "node.add", target=node.name, params=params):
        node.full_clean()
        with transaction.atomic():
            node.save()
            if enabled:
                _enqueue_refresh(node.pk)
                _enqueue_trust(node)
        return node


def update_node(node: Node, actor: Actor, **changes: object) -> Node:
    """Apply changes to a node after validating the whole result."""
    allowed = {"name", "uri", "migration_address", "migration_ssh_port", "enabled", "virt_type"}
    unknown = set(changes) - allowed
    if unknown:
        raise TypeError(f"cannot change {', '.join(sorted(unknown))}")
    with audit.action(
        actor, Permission.NODE_MANAGE, "node.update", target=node.name, params=dict(changes)
    ):
        return _update_node(node, changes)


def _update_node(node: Node, changes: dict[str, object]) -> Node:
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
            _enqueue_trust(node)
    return node


def remove_node(node: Node, actor: Actor) -> int:
    """Forget a node and its inventory. Nothing on the host itself is touched.

    Returns how many inventory rows went with it.
    """
    with audit.action(actor, Permission.NODE_MANAGE, "node.remove", target=node.name) as done:
        with transaction.atomic():
            removed, _ = VirtualMachine.objects.filter(node=node).delete()
            node.delete()
        done.detail = f"removed with {removed} inventory rows"
        return removed


def request_refresh(nodes: list[Node] | None = None, *, actor: Actor) -> int:
    """Queue an inventory refresh of the given (default: all enabled) nodes."""
    names = "all" if nodes is None else ",".join(node.name for node in nodes)
    with audit.action(actor, Permission.NODE_REFRESH, "node.refresh", target=names[:255]):
        targets = nodes if nodes is not None else list(Node.objects.filter(enabled=True))
        for node in targets:
            _enqueue_refresh(node.pk)
        return len(targets)
