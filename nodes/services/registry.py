"""Adding, changing and removing nodes; every path validates before it saves."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from kvmmgr import audit
from kvmmgr.access import Actor, Permission
from nodes.models import Node, VirtType
from nodes.services import hooks, hostkeys
from nodes.services.trust import known_hosts_name
from nodes.tasks import forget_migration_key


def _enqueue_refresh(node_id: int) -> None:
    """Ask for an inventory refresh of the node once the change is committed (vms queues it)."""
    transaction.on_commit(lambda: hooks.refresh_requested(node_id))


def _enqueue_forget(node: Node) -> None:
    """Remove ``node``'s migration key and host key from its peers, after commit."""
    if not node.uri.startswith("qemu+ssh://"):
        return
    args = (node.name, known_hosts_name(node))
    transaction.on_commit(lambda: forget_migration_key.delay(*args))


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
            # Observations of the old URI say nothing about the new one, and the
            # host key an admin confirmed was another host's.
            node.last_seen = None
            node.last_error = ""
            node.trusted_host_key = ""
            _enqueue_forget(Node.objects.get(pk=node.pk))  # the old URI's peer path
        node.save()
        if node.enabled:
            _enqueue_refresh(node.pk)
    return node


def remove_node(node: Node, actor: Actor) -> int:
    """Forget a node and its inventory. Nothing on the host itself is touched; its
    migration key is removed from its peers' authorized_keys (a task).

    Returns how many inventory rows went with it.
    """
    with audit.action(actor, Permission.NODE_MANAGE, "node.remove", target=node.name) as done:
        with transaction.atomic():
            removed = hooks.node_removed(node)  # the inventory rows of the node
            _enqueue_forget(node)
            node.delete()
        done.detail = f"removed with {removed} inventory rows"
        return removed


def confirm_trust(node: Node, actor: Actor, fingerprint: str) -> Node:
    """Record that an admin checked ``node``'s host key; migration trust may follow.

    ``fingerprint`` must be the key the manager pinned at first contact, so what
    the admin compared out of band is what every later connection insists on.
    Trust itself is installed only between the two nodes of a migration, when it
    needs it (nodes.services.trust.ensure).
    """
    fingerprint = fingerprint.strip()
    with audit.action(
        actor, Permission.NODE_MANAGE, "node.trust", target=node.name, params={"key": fingerprint}
    ):
        pinned = hostkeys.pinned_fingerprint(node)
        if not pinned:
            raise ValidationError(
                f"The manager has not reached {node.name} over ssh yet, so no host key is "
                f"pinned to confirm: check it is online (manage.py checknode {node.name})."
            )
        if fingerprint != pinned:
            raise ValidationError(
                f"{fingerprint or 'An empty fingerprint'} is not {node.name}'s pinned host key "
                f"({pinned}). Compare with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` "
                f"on the node itself; if they differ, the manager did not reach that host."
            )
        node.trusted_host_key = fingerprint
        node.save(update_fields=["trusted_host_key"])
        return node


def set_maintenance(node: Node, actor: Actor, on: bool, reason: str = "") -> Node:
    """Put ``node`` in maintenance (never a destination for new VMs or migrations) or
    take it out. VMs already on it keep running; nothing on the host changes."""
    reason = reason.strip()
    params = {"on": on, "reason": reason}
    action = "node.maintenance.on" if on else "node.maintenance.off"
    with audit.action(
        actor, Permission.NODE_MANAGE, action, target=node.name, params=params
    ) as done:
        if len(reason) > 200:
            raise ValidationError({"reason": ["At most 200 characters."]})
        if on == node.in_maintenance:
            done.detail = f"already {'in' if on else 'out of'} maintenance"
            return node
        node.maintenance_since = timezone.now() if on else None
        node.maintenance_reason = reason if on else ""
        node.save(update_fields=["maintenance_since", "maintenance_reason"])
        return node


def refuse_if_in_maintenance(node: Node, field: str) -> None:
    """What every choice of a destination calls: a node in maintenance takes nothing new."""
    if node.in_maintenance:
        why = f" ({node.maintenance_reason})" if node.maintenance_reason else ""
        raise ValidationError(
            {
                field: [
                    f"Node {node.name} is in maintenance{why}: it takes no new VMs. Choose "
                    f"another node, or end it with manage.py maintenance {node.name} off."
                ]
            }
        )


def revoke_trust(node: Node, actor: Actor) -> Node:
    """No more migrations to or from ``node`` until trust is confirmed again; its key
    is removed from its peers."""
    with audit.action(actor, Permission.NODE_MANAGE, "node.untrust", target=node.name):
        with transaction.atomic():
            _enqueue_forget(node)
            node.trusted_host_key = ""
            node.save(update_fields=["trusted_host_key"])
        return node


def request_refresh(nodes: list[Node] | None = None, *, actor: Actor) -> int:
    """Queue an inventory refresh of the given (default: all enabled) nodes."""
    names = "all" if nodes is None else ",".join(node.name for node in nodes)
    with audit.action(actor, Permission.NODE_REFRESH, "node.refresh", target=names[:255]):
        targets = nodes if nodes is not None else list(Node.objects.filter(enabled=True))
        for node in targets:
            _enqueue_refresh(node.pk)
        return len(targets)
