"""Which overlay carries an address, and why it is down: asked by nodes' and vms' messages.

A node reached through a VPN tunnel fails in libvirt's or ssh's words ("connection
timed out"); an admin needs "VPN down: tunnel t1 …" instead. The overlay app (vpn)
knows tunnels and sits above vms, so it registers an ``OverlayExplainer`` in its
``AppConfig.ready()``; the functions below ask whichever is registered. The default
explainer knows no overlay: every message stays as the adapter said it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodes.models import Node


class OverlayExplainer:
    """What an overlay app answers; these defaults mean "no overlay here"."""

    def overlay_of(self, address: str) -> str:
        """The name of the overlay whose subnet holds ``address``, or ''."""
        return ""

    def unreachable_reason(self, node: Node, message: str) -> str:
        """``message`` (a failed contact with ``node``), explained when an overlay carries it."""
        return message

    def link_problem(self, nodes: Sequence[Node]) -> str:
        """Why the overlay joining ``nodes`` is not usable right now (asked afresh), or ''."""
        return ""

    def recorded_problem(self, source: Node, dest: Node) -> str:
        """Why the overlay carrying ``dest``'s peer path from ``source`` is not usable as
        last recorded (no contact with any node), or ''."""
        return ""


_default = OverlayExplainer()
_explainer: OverlayExplainer = _default


def register(explainer: OverlayExplainer | None) -> None:
    """Make ``explainer`` the one every question goes to (None: back to the default)."""
    global _explainer  # noqa: PLW0603 - one explainer per process, set at app start
    _explainer = explainer if explainer is not None else _default


def overlay_of(address: str) -> str:
    return _explainer.overlay_of(address)


def unreachable_reason(node: Node, message: str) -> str:
    return _explainer.unreachable_reason(node, message)


def link_problem(nodes: Sequence[Node]) -> str:
    return _explainer.link_problem(nodes)


def recorded_problem(source: Node, dest: Node) -> str:
    return _explainer.recorded_problem(source, dest)
