"""Refreshing a node's VM inventory from the hypervisor into the database."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from nodes.hypervisor import DomainInfo, HypervisorError, collect_facts, list_domains
from nodes.hypervisor.states import VMState
from nodes.models import Node
from nodes.services import links
from vms.models import VirtualMachine

log = logging.getLogger(__name__)

_FIELDS = (
    "node",
    "name",
    "state",
    "vcpus",
    "memory_mib",
    "persistent",
    "vnc_port",
    "vnc_listen",
    "xml_summary",
)


@dataclass(frozen=True)
class RefreshResult:
    node: str
    ok: bool
    domains: int = 0
    created: int = 0
    updated: int = 0
    vanished: int = 0
    error: str = ""


def refresh_node(node: Node) -> RefreshResult:
    """Contact the node once, then record what it runs and whether it answered.

    The hypervisor call happens outside any transaction so a slow host never
    holds a database lock; the write is one short transaction.
    """
    attempted = timezone.now()
    facts: dict[str, object] | None = None
    try:
        domains = list_domains(node.uri)
        if _facts_due(node, attempted):
            facts = collect_facts(node.uri)
    except HypervisorError as exc:
        # A node reached through a VPN tunnel is reported as "VPN down".
        message = links.unreachable_reason(node, exc.message)
        Node.objects.filter(pk=node.pk).update(last_attempt_at=attempted, last_error=message)
        log.warning("inventory of %s failed: %s", node.name, message)
        return RefreshResult(node=node.name, ok=False, error=message)
    with transaction.atomic():
        counts = apply_inventory(node, domains, observed_at=timezone.now())
        seen: dict[str, object] = {"last_seen": timezone.now(), "last_error": ""}
        if facts is not None:
            seen.update(facts=facts, facts_at=attempted)
        Node.objects.filter(pk=node.pk).update(last_attempt_at=attempted, **seen)
    return RefreshResult(node=node.name, ok=True, domains=len(domains), **counts)


def _facts_due(node: Node, now: datetime) -> bool:
    """Facts (pools, ISOs, networks) change rarely: read them every FACTS_INTERVAL."""
    if node.facts_at is None:
        return True
    return (now - node.facts_at).total_seconds() >= settings.KVMMGR_FACTS_INTERVAL


def _may_claim(row: VirtualMachine, domain: DomainInfo, node: Node) -> bool:
    """Whether a row last seen on another node now belongs to this one.

    During a migration the domain briefly exists on both nodes; the row follows
    the copy that is active, or any copy once the old one has vanished.
    """
    if row.node_id == node.pk:
        return True
    return domain.state in VMState.active() or row.vanished_at is not None or not row.is_active


def apply_inventory(
    node: Node, domains: list[DomainInfo], *, observed_at: datetime
) -> dict[str, int]:
    """Upsert the observed domains for ``node`` and mark the missing ones vanished.

    Only rows whose values changed are rewritten; the observation time of every
    seen row is stamped with one UPDATE. On a steady node almost nothing changes,
    and a 1,000-row ``bulk_update`` of every column is what would cost the time.
    """
    by_uuid = {d.uuid: d for d in domains}
    existing = {str(vm.uuid): vm for vm in VirtualMachine.objects.filter(uuid__in=list(by_uuid))}
    to_create: list[VirtualMachine] = []
    to_update: list[VirtualMachine] = []
    seen_ids: list[int] = []
    for uuid, domain in by_uuid.items():
        row = existing.get(uuid)
        values = _row_values(node, domain)
        if row is None:
            to_create.append(VirtualMachine(uuid=uuid, observed_at=observed_at, **values))
            continue
        if not _may_claim(row, domain, node):
            continue
        seen_ids.append(row.pk)
        changed = row.vanished_at is not None
        row.vanished_at = None
        for key, value in values.items():
            if getattr(row, key) != value:
                setattr(row, key, value)
                changed = True
        if changed:
            row.observed_at = observed_at
            to_update.append(row)
    VirtualMachine.objects.bulk_create(to_create, batch_size=500)
    VirtualMachine.objects.bulk_update(
        to_update, [*_FIELDS, "observed_at", "vanished_at"], batch_size=200
    )
    VirtualMachine.objects.filter(pk__in=seen_ids).update(observed_at=observed_at)
    vanished = (
        VirtualMachine.objects.filter(node=node, vanished_at__isnull=True)
        .exclude(uuid__in=list(by_uuid))
        .update(vanished_at=observed_at, vnc_port=None)
    )
    return {"created": len(to_create), "updated": len(to_update), "vanished": vanished}


def _row_values(node: Node, domain: DomainInfo) -> dict[str, object]:
    return {
        "node_id": node.pk,
        "name": domain.name,
        "state": domain.state,
        "vcpus": domain.vcpus,
        "memory_mib": domain.memory_mib,
        "persistent": domain.persistent,
        "vnc_port": domain.vnc_port,
        "vnc_listen": domain.vnc_listen,
        "xml_summary": domain.xml_summary,
    }


def forget_node(node: Node) -> int:
    """Delete the inventory rows of a node being removed (the registry's removal hook).

    Returns how many rows went, those that cascade with them included.
    """
    removed, _ = VirtualMachine.objects.filter(node=node).delete()
    return removed
