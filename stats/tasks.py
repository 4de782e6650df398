"""Celery tasks for stats: thin wrappers that load rows and call a service."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from nodes.models import Node
from stats.services import retention, sampling


def online_node_ids() -> list[int]:
    """Enabled nodes the inventory last saw online: an offline node is not sampled."""
    return [node.pk for node in Node.objects.filter(enabled=True) if node.is_online]


@shared_task(name="stats.tasks.sample_all_nodes", ignore_result=True)
def sample_all_nodes() -> int:
    """Fan out one sampling task per online node so a slow node delays no other.

    A task still queued when the next cycle starts is dropped (``expires``).
    """
    node_ids = online_node_ids()
    for node_id in node_ids:
        sample_node.apply_async((node_id,), expires=settings.KVMMGR_STATS_INTERVAL)
    return len(node_ids)


@shared_task(
    name="stats.tasks.sample_node",
    ignore_result=True,
    soft_time_limit=30,
    time_limit=45,
)
def sample_node(node_id: int) -> None:
    node = Node.objects.filter(pk=node_id, enabled=True).first()
    if node is not None:
        sampling.sample_node(node)


@shared_task(name="stats.tasks.roll_up_and_prune", ignore_result=True, time_limit=600)
def roll_up_and_prune() -> None:
    retention.run_retention()
