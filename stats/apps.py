"""Stats: CPU/RAM samples per VM and node, and the charts drawn from them."""

from __future__ import annotations

from django.apps import AppConfig


class StatsConfig(AppConfig):
    name = "stats"
    verbose_name = "Statistics"
