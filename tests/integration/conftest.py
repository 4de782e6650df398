"""Integration tests against the real, namespaced libvirt lab.

The lab fixtures (``lab``, ``lab_node``, ``lab_node2``, ``running_guest``,
``manager_ssh``) live in tests/lab/fixtures.py, a plugin shared with tests/e2e.
"""

from __future__ import annotations

from pathlib import Path

import pytest

INTEGRATION_DIR = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker here too, so this directory works without pyproject.toml."""
    config.addinivalue_line("markers", "integration: needs the real libvirtd lab (tests/lab)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/integration is an integration test, marked or not."""
    for item in items:
        if INTEGRATION_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)
