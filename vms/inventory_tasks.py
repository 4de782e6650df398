"""Celery tasks that refresh the VM inventory: thin wrappers that load rows and call a service.

The task names are the ones these tasks had when nodes owned them: the beat
schedule (kvmmgr/celery.py) and messages a running manager already queued use them.
``VmsConfig.ready()`` imports this module, so every worker registers the tasks.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from nodes.models import Node
from vms.services import inventory


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


def queue_refresh(node_id: int) -> None:
    """The registry's refresh hook (nodes.services.hooks): one refresh task for the node."""
    refresh_node.delay(node_id)
