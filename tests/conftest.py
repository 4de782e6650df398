from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from kvmmgr.models import Role, UserRole
from nodes.hypervisor import close_all
from tests.support.nodexml import FakeDomain, make_domains, write_node_xml

# The real nginx + uwsgi site (deployed_site) and the libvirt lab (lab, lab_node, ...),
# shared by tests/integration and tests/e2e.
pytest_plugins = ["tests.support.deploysite", "tests.lab.fixtures"]


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


def make_user(name: str, role: str = Role.ADMIN) -> Any:
    """A Django user with a kvmmgr role (what manage.py adduser creates, minus htpasswd)."""
    user = get_user_model().objects.create_user(name, password="correct horse battery")
    UserRole.objects.create(user=user, role=role)
    return user


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client(db: None) -> Client:
    return client_for(make_user("alice", Role.ADMIN))


@pytest.fixture
def operator_client(db: None) -> Client:
    return client_for(make_user("oscar", Role.OPERATOR))


@pytest.fixture
def viewer_client(db: None) -> Client:
    return client_for(make_user("vera", Role.VIEWER))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses the libvirt lab (directly or through another fixture).

    tests/run.sh runs those scenarios on one database engine only: they exercise
    libvirt, ssh and OpenVPN, and running them twice would push CI past 30 minutes.
    """
    for item in items:
        if "lab" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.lab)
