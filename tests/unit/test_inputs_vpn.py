"""Tunnels: ``TunnelForm`` and ``MemberForm`` are the input schema of ``vpn create`` and
``vpn add``; a bad value gets the words the service's own guard would say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError

from kvmmgr.inputs.cli import flag_of
from kvmmgr.models import AuditEntry
from tests.support.factories import make_node
from vpn import services
from vpn.forms import MemberForm, TunnelForm
from vpn.models import Tunnel, TunnelMember

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def vpn_dir(tmp_path: Path, settings: object) -> Path:
    settings.KVMMGR_VPN_DIR = tmp_path / "vpn"  # type: ignore[attr-defined]
    return tmp_path / "vpn"


def _flags(action: str) -> set[str]:
    parser = load_command_class("vpn", "vpn").create_parser("manage.py", "vpn")
    sub = next(a for a in parser._actions if getattr(a, "choices", None) and action in a.choices)
    return {s for a in sub.choices[action]._actions for s in a.option_strings}


def test_vpn_create_and_add_flags_are_the_forms() -> None:
    names = set(TunnelForm.base_fields) - {"name"}
    assert {flag_of(n) for n in names} | {"--endpoint"} <= _flags("create")
    assert {flag_of(n) for n in set(MemberForm.base_fields) - {"tunnel", "node"}} <= _flags("add")


@pytest.mark.parametrize(
    ("flags", "service"),
    [
        (["--mtu", "100"], {"mtu": 100}),
        (["--port", "0"], {"port": 0}),
        (["--mode", "bridged"], {"mode": "bridged"}),
        (["--bridge", "br0"], {"bridge": "br0"}),
        (["--manager-network", "100.64.0.0/16"], {"manager_network": "100.64.0.0/16"}),
        (["--endpoint", "100.64.0.9"], {"server_endpoint": "100.64.0.9"}),
        (["--subnet", "100.64.0.1/24"], {"subnet": "100.64.0.1/24"}),
    ],
)
def test_bad_tunnel_input_gets_the_services_words_and_changes_nothing(
    flags: list[str], service: dict[str, Any]
) -> None:
    server = make_node(name="node1", uri="qemu+ssh://root@198.51.100.11/system")
    kwargs: dict[str, Any] = {"name": "t1", "subnet": "100.64.0.0/24", "server": server}
    with pytest.raises(ValidationError) as guard:
        services.create_tunnel(**{**kwargs, **service})
    base = ["vpn", "create", "t1", "--server", "node1", "--subnet", "100.64.0.0/24"]
    with pytest.raises(CommandError) as cli:
        call_command(*base, *flags)
    assert str(cli.value) == "; ".join(guard.value.messages)
    assert not Tunnel.objects.exists()
    assert AuditEntry.objects.get(action="vpn.create").result != "ok"


def test_tunnel_names_nodes_and_members_are_checked_by_the_forms() -> None:
    make_node(name="node1", uri="qemu+ssh://root@198.51.100.11/system")
    with pytest.raises(CommandError, match="Tunnel name 'T1' is not allowed"):
        call_command("vpn", "create", "T1", "--server", "node1", "--subnet", "100.64.0.0/24")
    with pytest.raises(CommandError, match="There is no node named 'nowhere'"):
        call_command("vpn", "create", "t1", "--server", "nowhere", "--subnet", "100.64.0.0/24")
    with pytest.raises(CommandError, match="There is no tunnel named 't9'"):
        call_command("vpn", "add", "t9", "node1")
    call_command("vpn", "create", "t1", "--server", "node1", "--subnet", "100.64.0.0/24")
    make_node(name="node2", uri="qemu+ssh://root@198.18.0.12/system")
    with pytest.raises(CommandError, match=r"not allowed|metacharacters|not a"):
        call_command("vpn", "add", "t1", "node2", "--control-uri", "qemu+ssh://x;y/system")
    assert TunnelMember.objects.count() == 1
    call_command("vpn", "add", "t1", "node2")
    assert TunnelMember.objects.count() == 2
