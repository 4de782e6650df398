"""Celery tasks for nodes: thin wrappers that load rows and call a service."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from nodes.models import Node
from vms.services import inventory

logger = logging.getLogger(__name__)


@shared_task(name="nodes.tasks.refresh_all_nodes", ignore_result=True)
def refresh_all_nodes() -> int:
    """Fan out one refresh task per enabled node so a slow node delays no other.

    A refresh still queued when the next cycle starts is dropped (``expires``):
    a blackholed node never piles up work.
    """
    node_ids = list(Node.objects.filter(enabled=True).values_list("pk", flat=True))
    for node_id in node_ids:
        refresh_node.apply_async((node_id,), expires=settings.KVMMGR_INVENTORY_INTERVAL)
    return len(node_ids)


@shared_task(
    name="nodes.tasks.refresh_node",
    ignore_result=True,
    # Connection setup is bounded by the adapter; this bounds a host that hangs mid-listing.
    soft_time_limit=60,
    time_limit=90,
)
def refresh_node(node_id: int) -> None:
    node = Node.objects.filter(pk=node_id, enabled=True).first()
    if node is not None:
        inventory.refresh_node(node)


@shared_task(name="nodes.tasks.forget_migration_key", ignore_result=True, soft_time_limit=120)
def forget_migration_key(name: str, known_name: str) -> list[str]:
    """Remove a removed, untrusted or re-keyed node's migration key from every other
    reachable qemu+ssh node (and its host-key line from theirs).

    A peer that cannot be reached now keeps the key; the log says which, so an admin
    can remove the line (marked ``kvmmgr-migration@NAME``) by hand.
    """
    from nodes.hypervisor import HypervisorError
    from nodes.services import trust

    report = []
    for peer in Node.objects.filter(uri__startswith="qemu+ssh://").exclude(name=name):
        try:
            report += trust.forget(name, known_name, [peer])
        except HypervisorError as exc:
            logger.warning(
                "migration key of %s not removed from %s: %s; remove the line ending "
                "kvmmgr-migration@%s from root's authorized_keys there",
                name,
                peer.name,
                exc.message,
                name,
            )
    return report
