"""No migration trust without an admin's confirmation of the host key,
only between the nodes of a migration, and withdrawn with the node."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from kvmmgr.access import Actor
from kvmmgr.models import AuditEntry
from nodes.models import Node
from nodes.services import hostkeys, registry, trust
from tests.support.factories import make_node

URI = "qemu+ssh://root@198.51.100.254:2222/system"


def _keygen(tmp_path: Path, name: str) -> tuple[str, str]:
    """A fresh ed25519 key: its public line and ssh-keygen's own fingerprint of it."""
    key = tmp_path / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30
    )
    public = key.with_suffix(".pub").read_text().strip()
    listed = subprocess.run(
        ["ssh-keygen", "-lf", str(key.with_suffix(".pub"))],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.split()[1]
    return " ".join(public.split()[:2]), listed


@pytest.fixture
def pinned(tmp_path: Path, settings: object) -> str:
    """The manager's known_hosts with the router's port forward pinned (hashed, as
    Debian's ssh writes it); returns ssh-keygen's fingerprint of that key."""
    known = tmp_path / "known_hosts"
    line, fingerprint = _keygen(tmp_path, "hostkey")
    other, _ = _keygen(tmp_path, "otherkey")
    known.write_text(f"198.51.100.254 {other}\n[198.51.100.254]:2222 {line}\n")
    subprocess.run(
        ["ssh-keygen", "-q", "-H", "-f", str(known)], check=True, capture_output=True, timeout=30
    )
    assert "198.51.100.254" not in known.read_text()
    settings.KVMMGR_SSH_KNOWN_HOSTS = known  # type: ignore[attr-defined]
    return fingerprint


@pytest.mark.django_db
def test_the_pinned_key_is_ssh_keygens_fingerprint_at_the_uris_port(pinned: str) -> None:
    node = make_node(name="nat2", uri=URI)
    assert hostkeys.pinned_fingerprint(node) == pinned
    assert not hostkeys.trust_confirmed(node)
    assert hostkeys.pinned_fingerprint(make_node(uri="qemu+ssh://root@198.18.0.9/system")) == ""


@pytest.mark.django_db
def test_confirmation_must_name_the_pinned_key(pinned: str) -> None:
    node = make_node(name="nat2", uri=URI)
    admin = Actor.system("admin")
    with pytest.raises(ValidationError, match="is not nat2's pinned host key"):
        registry.confirm_trust(node, admin, "SHA256:" + "A" * 43)
    node.refresh_from_db()
    assert node.trusted_host_key == "" and not hostkeys.trust_confirmed(node)
    registry.confirm_trust(node, admin, pinned)
    node.refresh_from_db()
    assert node.trusted_host_key == pinned and hostkeys.trust_confirmed(node)
    results = AuditEntry.objects.filter(action="node.trust").values_list("result", flat=True)
    assert sorted(results) == ["ok", "refused"]


@pytest.mark.django_db
def test_a_node_never_reached_has_nothing_to_confirm(pinned: str) -> None:
    node = make_node(name="far", uri="qemu+ssh://root@198.18.0.40/system")
    with pytest.raises(ValidationError, match="has not reached far over ssh yet"):
        registry.confirm_trust(node, Actor.system("admin"), pinned)


@pytest.mark.django_db
def test_a_changed_host_key_ends_the_confirmation(pinned: str, tmp_path: Path) -> None:
    node = make_node(name="nat2", uri=URI, trusted_host_key=pinned)
    assert trust.unconfirmed(node) == []
    line, _ = _keygen(tmp_path, "reinstalled")
    Path(str(tmp_path / "known_hosts")).write_text(f"[198.51.100.254]:2222 {line}\n")
    assert trust.unconfirmed(node) == [node]
    message = trust.unconfirmed_failure([node])
    assert "nat2 is not confirmed" in message and "manage.py trustnode nat2" in message


@pytest.mark.django_db
def test_adding_a_node_installs_no_trust_and_removing_one_withdraws_its_key(
    pinned: str, django_capture_on_commit_callbacks: object
) -> None:
    admin = Actor.system("admin")
    with django_capture_on_commit_callbacks() as callbacks:  # type: ignore[operator]
        node = registry.add_node(actor=admin, name="nat2", uri=URI, enabled=False)
    assert callbacks == []  # no trust task (and, disabled, no refresh)
    with django_capture_on_commit_callbacks() as callbacks:  # type: ignore[operator]
        registry.remove_node(node, admin)
    assert len(callbacks) == 1  # forget_migration_key, queued after the commit


@pytest.mark.django_db
def test_a_new_uri_needs_a_new_confirmation(
    pinned: str, django_capture_on_commit_callbacks: object
) -> None:
    node = make_node(name="nat2", uri=URI, trusted_host_key=pinned, enabled=False)
    with django_capture_on_commit_callbacks():  # type: ignore[operator]
        registry.update_node(node, Actor.system("admin"), uri="qemu+ssh://root@198.18.0.12/system")
    node.refresh_from_db()
    assert node.trusted_host_key == ""


@pytest.mark.django_db
def test_trustnode_shows_then_confirms_then_revokes(pinned: str) -> None:
    make_node(name="nat2", uri=URI)
    out = io.StringIO()
    call_command("trustnode", "nat2", stdout=out)
    assert f"pinned host key {pinned}" in out.getvalue()
    assert f"manage.py trustnode nat2 --fingerprint {pinned}" in out.getvalue()
    with pytest.raises(CommandError, match="nothing saved"):
        call_command("trustnode", "nat2", "--fingerprint", "SHA256:nope")
    call_command("trustnode", "nat2", "--fingerprint", pinned, stdout=io.StringIO())
    assert Node.objects.get(name="nat2").trusted_host_key == pinned
    call_command("trustnode", "nat2", "--revoke", stdout=io.StringIO())
    assert Node.objects.get(name="nat2").trusted_host_key == ""


@pytest.mark.django_db
def test_the_edit_page_shows_the_key_and_only_an_admin_confirms_it(
    pinned: str, admin_client: Client, operator_client: Client
) -> None:
    node = make_node(name="nat2", uri=URI)
    page = admin_client.get(reverse("nodes:node_edit", args=[node.pk])).content.decode()
    assert pinned in page and "confirm" in page
    url = reverse("nodes:node_trust", args=[node.pk])
    assert admin_client.get(url).status_code == 405
    response = admin_client.post(url, {"fingerprint": pinned})
    assert response.status_code == 302
    node.refresh_from_db()
    assert node.trusted_host_key == pinned
    assert operator_client.post(url, {"revoke": "1"}).status_code == 403
    node.refresh_from_db()
    assert node.trusted_host_key == pinned
