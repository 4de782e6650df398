from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from nodes.hypervisor import close_all
from tests.nodexml import FakeDomain, make_domains, write_node_xml


@pytest.fixture(autouse=True)
def _fresh_connections() -> Iterator[None]:
    """Each test opens its own libvirt connections; none leak into the next test."""
    yield
    close_all()


@pytest.fixture
def node_xml(tmp_path: Path) -> Callable[..., str]:
    """Write a fake host for libvirt's test driver and return its ``test:///`` URI."""

    def build(domains: list[FakeDomain] | int = 5, name: str = "node") -> str:
        if isinstance(domains, int):
            domains = make_domains(domains, seed=name)
        path = write_node_xml(tmp_path / f"{name}.xml", domains)
        return f"test://{path}"

    return build


@pytest.fixture
def admin_client(db: None) -> Client:
    user = get_user_model().objects.create_user("alice", password="correct horse battery")
    client = Client()
    client.force_login(user)
    return client
