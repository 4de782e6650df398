"""Whether an admin confirmed a node's host key (the gate for migration trust).

The pinned key is read from the manager's known_hosts (nodes.remote); no node is
contacted here, so pages and pre-checks may ask freely.
"""

from __future__ import annotations

from nodes import remote
from nodes.models import Node


def pinned_fingerprint(node: Node) -> str:
    """``SHA256:…`` of the key the manager pinned at first contact, or ""."""
    return remote.pinned_fingerprint(node.uri)


def trust_confirmed(node: Node) -> bool:
    """True while the key an admin confirmed is the one the manager pins."""
    return bool(node.trusted_host_key) and node.trusted_host_key == pinned_fingerprint(node)
