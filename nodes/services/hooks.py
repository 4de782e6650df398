"""What the apps above nodes do when the registry changes a node.

nodes sits below vms in the layers, so the registry cannot call the VM inventory
itself. It calls these hooks instead, and vms registers its handlers in
``VmsConfig.ready()``. Without a handler a refresh request does nothing and a
removal removes no rows of other apps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodes.models import Node

RefreshHandler = Callable[[int], None]
RemovalHandler = Callable[["Node"], int]

_refresh_handlers: list[RefreshHandler] = []
_removal_handlers: list[RemovalHandler] = []


def on_refresh_requested(handler: RefreshHandler) -> RefreshHandler:
    """Register ``handler(node_id)``: queue a refresh of that node's inventory.

    Called after the transaction that added, changed or asked to refresh the node
    committed. Registering the same handler twice keeps one.
    """
    if handler not in _refresh_handlers:
        _refresh_handlers.append(handler)
    return handler


def on_node_removal(handler: RemovalHandler) -> RemovalHandler:
    """Register ``handler(node) -> rows``: delete what refers to ``node`` before it goes.

    Runs inside the removal's transaction; returns how many rows it deleted.
    """
    if handler not in _removal_handlers:
        _removal_handlers.append(handler)
    return handler


def refresh_requested(node_id: int) -> None:
    for handler in _refresh_handlers:
        handler(node_id)


def node_removed(node: Node) -> int:
    """Run every removal handler for ``node``; the rows they deleted, summed."""
    return sum(handler(node) for handler in _removal_handlers)
