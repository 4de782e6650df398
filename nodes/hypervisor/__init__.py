"""The hypervisor adapter: the only package that imports libvirt.

Everything else talks to hosts through the functions re-exported here and gets
plain dataclasses, our own named states and one exception type back.
"""

from __future__ import annotations

from nodes.hypervisor.connection import answers, close_all, connection_for
from nodes.hypervisor.domains import DomainInfo, list_domains
from nodes.hypervisor.errors import HypervisorError
from nodes.hypervisor.host import (
    HostReport,
    NodeVersions,
    collect_facts,
    node_versions,
    probe_host,
)
from nodes.hypervisor.stats import DomainCounters, HostCounters, NodeCounters, node_stats

__all__ = [
    "DomainCounters",
    "DomainInfo",
    "HostCounters",
    "HostReport",
    "HypervisorError",
    "NodeCounters",
    "NodeVersions",
    "answers",
    "close_all",
    "collect_facts",
    "connection_for",
    "list_domains",
    "node_stats",
    "node_versions",
    "probe_host",
]
