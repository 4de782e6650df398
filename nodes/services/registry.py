"""Adding, changing and removing nodes; every path validates before it saves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from kvmmgr import audit
from kvmmgr.access import Actor, Permission
from kvmmgr.inputs.fields import errors_of
from nodes.forms import FIELDS as NODE_FIELDS
from nodes.forms import MaintenanceForm, NodeForm, OnOff
from nodes.models import Node
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


def add_node(*, actor: Actor, **data: Any) -> Node:
    """Validate and save a node, then queue its first inventory refresh.

    ``data`` are ``NodeForm``'s fields (``name``, ``uri``, ``migration_address``,
    ``migration_ssh_port``, ``enabled``, ``virt_type``), typed or as given; left out,
    a field has its default (enabled, auto). Raises
    ``django.core.exceptions.ValidationError`` with per-field messages; nothing is
    saved in that case.
    """
    return save_node(NodeForm(data), actor)


def update_node(node: Node, actor: Actor, **changes: Any) -> Node:
    """Apply ``changes`` (``NodeForm``'s fields) to a node after validating the whole
    result; returns the saved node (``node`` itself is refreshed from it)."""
    unknown = set(changes) - set(NODE_FIELDS)
    if unknown:
        raise TypeError(f"cannot change {', '.join(sorted(unknown))}")
    saved = save_node(NodeForm.for_change(node, changes), actor, changes=changes)
    node.refresh_from_db()
    return saved


def save_node(form: NodeForm, actor: Actor, *, changes: Mapping[str, Any] | None = None) -> Node:
    """Add (a form without an instance) or change a node through its one form.

    The form (with the model's validators) is checked inside the audit record, so a
    refusal is recorded with its reasons; ``changes`` are what the audit says was
    asked of an edit (default: every field given).
    """
    existing = form.instance.pk
    given = {k: form.data.get(k) for k in NODE_FIELDS if k in form.data}
    if existing is None:
        what = "node.add"
        target = str(given.get("name") or "").strip()
        params = {k: v for k, v in given.items() if k != "name"}
    else:
        what = "node.update"
        target = Node.objects.get(pk=existing).name
        params = dict(changes if changes is not None else given)
    with audit.action(actor, Permission.NODE_MANAGE, what, target=target, params=params):
        if not form.is_valid():
            raise errors_of(form)
        if existing is None:
            node = form.save(commit=False)
            with transaction.atomic():
                node.save()
                if node.enabled:
                    _enqueue_refresh(node.pk)
            return node
        return _update_node(form.save(commit=False))


def _update_node(node: Node) -> Node:
    before = Node.objects.get(pk=node.pk)
    with transaction.atomic():
        if node.uri != before.uri:
            # Observations of the old URI say nothing about the new one, and the
            # host key an admin confirmed was another host's.
            node.last_seen = None
            node.last_error = ""
            node.trusted_host_key = ""
            _enqueue_forget(before)  # the old URI's peer path
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


def set_maintenance(node: Node, actor: Actor, on: object = None, reason: object = "") -> Node:
    """Put ``node`` in maintenance (never a destination for new VMs or migrations) or
    take it out. VMs already on it keep running; nothing on the host changes.

    ``on`` and ``reason`` are ``MaintenanceForm``'s, checked inside the audit record.
    """
    form = MaintenanceForm({"on": on, "reason": reason})
    params = {"on": on, "reason": str(reason or "").strip()}
    try:
        what = "node.maintenance." + ("on" if OnOff().clean(on) else "off")
    except ValidationError:
        what = "node.maintenance"  # refused below, with the form's words
    with audit.action(actor, Permission.NODE_MANAGE, what, target=node.name, params=params) as done:
        on, reason = form.values()
        done.params.update({"on": on, "reason": reason})
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
