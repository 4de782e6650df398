"""Celery tasks for nodes: thin wrappers that load rows and call a service.

The inventory refresh tasks belong to vms (vms/inventory_tasks.py).
"""

from __future__ import annotations

import logging

from celery import shared_task

from nodes.hypervisor import HypervisorError
from nodes.models import Node
from nodes.services import trust

logger = logging.getLogger(__name__)


@shared_task(name="nodes.tasks.forget_migration_key", ignore_result=True, soft_time_limit=120)
def forget_migration_key(name: str, known_name: str) -> list[str]:
    """Remove a removed, untrusted or re-keyed node's migration key from every other
    reachable qemu+ssh node (and its host-key line from theirs).

    A peer that cannot be reached now keeps the key; the log says which, so an admin
    can remove the line (marked ``kvmmgr-migration@NAME``) by hand.
    """
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
