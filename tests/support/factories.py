"""Plain factory functions for test rows."""

from __future__ import annotations

import itertools
import uuid

from django.utils import timezone

from kvmmgr.access import Actor
from kvmmgr.models import Role
from nodes.hypervisor.states import VMState
from nodes.models import Node
from vms.models import VirtualMachine

_counter = itertools.count(1)


def actor(name: str = "alice", role: str = Role.ADMIN, source: str = "test") -> Actor:
    """A named actor for service calls; admin unless a test says otherwise."""
    return Actor(name=name, role=role, source=source)


def make_node(name: str | None = None, uri: str | None = None, **fields: object) -> Node:
    number = next(_counter)
    return Node.objects.create(
        name=name or f"node{number}",
        uri=uri or f"test:///tmp/kvmmgr-factory-{number}.xml",
        **fields,
    )


def make_vm(node: Node, name: str | None = None, **fields: object) -> VirtualMachine:
    number = next(_counter)
    defaults: dict[str, object] = {
        "uuid": uuid.uuid4(),
        "name": name or f"vm{number}",
        "state": VMState.RUNNING,
        "vcpus": 1,
        "memory_mib": 512,
        "observed_at": timezone.now(),
    }
    defaults.update(fields)
    return VirtualMachine.objects.create(node=node, **defaults)
