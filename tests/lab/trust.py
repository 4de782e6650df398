"""What an admin does before a node may migrate: compare its pinned host key with the
node's own, then confirm it (manage.py trustnode / the node's edit page)."""

from __future__ import annotations

import base64
import hashlib

from kvmmgr.access import Actor
from nodes.models import Node
from nodes.services import hostkeys, registry
from tests.lab.node import LabNode
from vms.services import inventory


def own_fingerprint(lab_node: LabNode) -> str:
    """``ssh-keygen -lf`` of the node's own host key, computed from its public line."""
    blob = base64.b64decode(lab_node.host_key_pub.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def confirm_host_key(row: Node, lab_node: LabNode) -> Node:
    """Confirm ``row``'s pinned key after checking it is ``lab_node``'s own."""
    if not hostkeys.pinned_fingerprint(row):
        result = inventory.refresh_node(row)  # first contact pins the key
        assert result.ok, result.error
    pinned = hostkeys.pinned_fingerprint(row)
    assert pinned == own_fingerprint(lab_node), (row.name, pinned)
    return registry.confirm_trust(row, Actor.system("admin"), pinned)
