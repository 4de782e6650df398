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


@shared_task(name="nodes.tasks.establish_trust", ignore_result=True, soft_time_limit=120)
def establish_trust(node_id: int) -> list[str]:
    """Let this node and every other enabled qemu+ssh node migrate to each other.

    A node that cannot be reached now is skipped; migration pre-checks install
    trust again if it is missing when a migration needs it.
    """
    from nodes.hypervisor import HypervisorError
    from nodes.services import trust

    node = Node.objects.filter(pk=node_id, enabled=True).first()
    if node is None:
        return []
    peers = [
        peer
        for peer in Node.objects.filter(enabled=True, uri__startswith="qemu+ssh://")
        if peer.pk != node.pk and peer.is_online
    ]
    if not peers:
        return []
    try:
        return trust.establish([node, *peers])
    except HypervisorError as exc:
        logger.warning("trust for %s not installed: %s", node.name, exc.message)
        return []
