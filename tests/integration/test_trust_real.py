"""Migration trust on real sshd: never installed for a node whose
host key no admin confirmed, installed between the two nodes of a migration only,
and taken off the peers with the node."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodes.hypervisor import HypervisorError
from nodes.models import Node
from nodes.remote import open_remote
from nodes.services import registry, trust
from nodes.tasks import forget_migration_key
from tests.lab.node import LabNode
from tests.lab.trust import confirm_host_key
from tests.support.factories import actor
from vms.services import inventory


def _register(lab_node: LabNode) -> Node:
    row = Node.objects.filter(name=lab_node.name).first() or registry.add_node(
        actor=actor(), name=lab_node.name, uri=lab_node.uri, virt_type="qemu"
    )
    assert inventory.refresh_node(row).ok
    row.refresh_from_db()
    return row


def _authorized_keys(node: Node) -> str:
    with open_remote(node.name, node.uri) as remote:
        home = remote.run(["sh", "-c", 'printf %s "$HOME"']).stdout.strip()
        return remote.read_file(f"{home}/.ssh/authorized_keys") or ""


def _migration_key(node: Node) -> str:
    with open_remote(node.name, node.uri) as remote:
        return (remote.read_file(f"{trust.KEY}.pub") or "").strip()


@pytest.mark.django_db
def test_trust_needs_a_confirmed_host_key_and_leaves_with_the_node(
    manager_ssh: Path,
    lab_node: LabNode,
    lab_node2: LabNode,
    django_capture_on_commit_callbacks: object,
) -> None:
    first, second = _register(lab_node), _register(lab_node2)
    # Start without trust between them (an earlier test may have installed it).
    for node, peer in ((first, second), (second, first)):
        trust.forget(node.name, trust.known_hosts_name(node), [peer])
    assert not trust.preflight(first, second).ok

    with pytest.raises(HypervisorError, match="not confirmed") as refused:
        trust.ensure(first, second)
    assert f"manage.py trustnode {first.name}" in refused.value.message
    assert trust.key_comment(first.name) not in _authorized_keys(second)

    confirm_host_key(first, lab_node)
    confirm_host_key(second, lab_node2)
    found, report = trust.ensure(first, second)
    assert found.ok and any("installed after" in line for line in report), report
    pubkey = _migration_key(first)
    assert pubkey.endswith(trust.key_comment(first.name)) and pubkey in _authorized_keys(second)

    # Removing the node takes its key off its peer (the task queued at commit).
    known = trust.known_hosts_name(first)
    with django_capture_on_commit_callbacks() as callbacks:  # type: ignore[operator]
        registry.remove_node(first, actor())
    assert len(callbacks) == 1
    forget_migration_key(first.name, known)
    assert pubkey not in _authorized_keys(second)
    assert trust.key_comment(first.name) not in _authorized_keys(second)
