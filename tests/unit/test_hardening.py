"""Hardening: what a careless admin or a crafted request could do; each one once failed."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from jobs.models import Job
from nodes.models import Node
from tests.support.factories import make_node, make_vm
from tests.support.nodexml import RUNSTATE_SHUTOFF, FakeDomain
from vms.forms.create import create_form
from vms.models import VirtualMachine
from vms.services import inventory


@pytest.mark.parametrize(
    ("next_url", "lands_on"),
    [
        ("https://evil.example/phish", "/"),  # off-site: an open redirect before
        ("//evil.example/x", "/"),
        ("nodots", "/"),  # a bare word was taken for a view name: 500 before
        ("javascript:alert(1)", "/"),
        ("/nodes/", "/nodes/"),
    ],
)
def test_node_refresh_goes_back_only_to_a_local_path(
    admin_client: Client, next_url: str, lands_on: str
) -> None:
    node = make_node(name="n1", uri="test:///default")
    response = admin_client.post(reverse("nodes:node_refresh", args=[node.pk]), {"next": next_url})
    assert response.status_code == 302 and response["Location"] == lands_on


@pytest.mark.parametrize("destination", ["abc", "-1", "1; DROP TABLE", ""])
def test_migrate_page_with_a_bad_destination_says_so(
    admin_client: Client, destination: str
) -> None:
    vm = make_vm(make_node(name="n1", uri="test:///default"), name="web")
    response = admin_client.post(
        reverse("vms:vm_migrate", args=[vm.uuid]), {"destination": destination}
    )
    assert response.status_code == 200  # the form again, with its error; was a 500
    assert not Job.objects.exists()
    assert Node.objects.count() == 1


def test_adduser_with_a_password_over_72_bytes_is_refused_clearly(
    db: None, tmp_path: Path, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.KVMMGR_HTPASSWD = tmp_path / "htpasswd"
    settings.KVMMGR_HTPASSWD_GROUP = ""
    monkeypatch.setattr("sys.stdin", io.StringIO("é" * 40 + "\n"))  # 80 bytes in UTF-8
    with pytest.raises(CommandError, match=r"80 bytes long.*at most 72 bytes"):
        call_command("adduser", "ada", "--role", "viewer", stdout=io.StringIO())
    assert not settings.KVMMGR_HTPASSWD.exists()
    from django.contrib.auth import get_user_model

    assert not get_user_model().objects.filter(username="ada").exists()


def test_no_inline_event_handlers_or_scripts_in_any_template() -> None:
    """The CSP (script-src 'self') blocks them behind nginx: the job filter did nothing."""
    root = Path(__file__).resolve().parents[2] / "templates"
    handler = re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE)
    inline_script = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
    offenders = [
        f"{path.relative_to(root)}: {match.group(0)[:80]}"
        for path in sorted(root.rglob("*.html"))
        for pattern in (handler, inline_script)
        for match in pattern.finditer(path.read_text())
    ]
    assert offenders == []


def test_job_list_filter_is_wired_by_a_static_script(admin_client: Client) -> None:
    page = admin_client.get(reverse("jobs:job_list")).content.decode()
    assert 'name="status" data-autosubmit' in page and "js/autosubmit.js" in page


@pytest.mark.django_db
def test_a_stopped_vms_fixed_vnc_port_stays_reserved(node_xml) -> None:
    """A new VM took the port of a stopped one; they could not both run."""

    uri = node_xml([FakeDomain("old", "77777777-7777-7777-7777-777777777777",
                               RUNSTATE_SHUTOFF, vnc_port=5905)], name="n1")  # fmt: skip
    node = make_node(name="n1", uri=uri)
    assert inventory.refresh_node(node).ok
    node.refresh_from_db()
    old = VirtualMachine.objects.get(name="old")
    assert old.vnc_port == 5905 and old.vnc_url == ""  # reserved, but no link while stopped
    with pytest.raises(ValidationError) as refused:
        create_form(node=node, name="new", vcpus=1, memory_mib=128, media="pxe",
                    disk_gib=1, vnc_port=5905).job_params()  # fmt: skip
    assert "in use by old" in str(refused.value)
