"""A recent live migration over the same peer path spares the next one its ssh check."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from jobs.choices import JobStatus
from jobs.models import Job
from nodes.models import Node
from tests.support.factories import make_node, make_vm
from vms.choices import JobKind
from vms.services.migration import peer_proof


def _migration(source: Node, dest: Node, *, ago_s: float, path: str, status: str) -> Job:
    vm = make_vm(source, name=f"vm{Job.objects.count()}")
    return Job.objects.create(
        kind=JobKind.MIGRATE,
        status=status,
        vm=vm,
        node=source,
        target_name=vm.name,
        lock_key=f"vm:{vm.uuid}",
        finished_at=timezone.now() - timedelta(seconds=ago_s),
        params={"destination_id": dest.pk, "peer_proof": {"path": path, "hostname": "n2"}},
    )


@pytest.mark.django_db
def test_only_a_recent_success_over_the_same_path_counts() -> None:
    source = make_node(name="n1", uri="qemu+ssh://root@198.51.100.11/system")
    dest = make_node(
        name="n2", uri="qemu+ssh://root@198.51.100.254:2222/system", migration_address="100.64.0.2"
    )
    assert peer_proof.recent(source, dest) is None
    _migration(source, dest, ago_s=30, path=dest.peer_path, status=JobStatus.FAILED)
    _migration(source, dest, ago_s=30, path="root@100.64.0.9:22", status=JobStatus.SUCCEEDED)
    _migration(source, dest, ago_s=3600, path=dest.peer_path, status=JobStatus.SUCCEEDED)
    _migration(dest, source, ago_s=30, path=source.peer_path, status=JobStatus.SUCCEEDED)
    assert peer_proof.recent(source, dest) is None  # failed, other path, too old, other way
    proof = _migration(source, dest, ago_s=30, path=dest.peer_path, status=JobStatus.SUCCEEDED)
    assert peer_proof.recent(source, dest) == proof
    found, installed = peer_proof.as_check(proof).result()
    assert found.ok and found.hostname == "n2" and found.port_answers and installed == []
    assert f"proven by job {proof.pk}" in peer_proof.describe(proof, dest)
    with override_settings(KVMMGR_PEER_PROOF_SECONDS=0):
        assert peer_proof.recent(source, dest) is None
