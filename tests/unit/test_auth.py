"""Roles in the services, the audit log, adduser's bad input, the CLI obeying roles."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.utils import timezone

from jobs.models import Job
from kvmmgr import htpasswd
from kvmmgr.access import AccessDenied, Actor, Permission
from kvmmgr.models import AppendOnlyError, AuditEntry, Role
from nodes.hypervisor.states import VMState
from nodes.services import registry
from tests.support.factories import actor, make_node, make_vm
from vms.services import lifecycle


@pytest.fixture
def vm(db: None):
    node = make_node(last_seen=timezone.now())
    return make_vm(node, name="web1", state=VMState.SHUTOFF)


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.VIEWER, set()),
        (Role.OPERATOR, {"vm.power", "vm.console", "vm.migrate", "job.abort", "node.refresh"}),
        (Role.ADMIN, {p.value for p in Permission}),
    ],
)
def test_grants(role: str, allowed: set[str]) -> None:
    who = actor("x", role)
    assert {p.value for p in Permission if who.can(p)} == allowed


def test_viewer_is_refused_in_the_service_and_audited(vm) -> None:
    with pytest.raises(AccessDenied, match="viewer role and may not start, stop"):
        lifecycle.request_start(vm, actor("vic", Role.VIEWER))
    assert not Job.objects.exists()
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.action, entry.target, entry.result) == (
        "vic",
        "vm.start",
        "web1",
        "denied",
    )


def test_operator_may_start_but_not_delete(vm) -> None:
    job = lifecycle.request_start(vm, actor("otto", Role.OPERATOR))
    entry = AuditEntry.objects.get(action="vm.start")
    assert entry.result == "ok" and entry.job == job and entry.params["node"] == vm.node.name
    with pytest.raises(AccessDenied):
        lifecycle.request_delete(vm, actor("otto", Role.OPERATOR))
    with pytest.raises(AccessDenied):
        registry.add_node(actor=actor("otto", Role.OPERATOR), name="n9", uri="test:///default")


def test_refusals_for_bad_input_are_audited(vm) -> None:
    running = make_vm(vm.node, name="web2", state=VMState.RUNNING)
    with pytest.raises(Exception, match="already"):
        lifecycle.request_start(running, actor())
    assert AuditEntry.objects.get(target="web2").result == "refused"


def test_a_plain_string_is_not_an_actor(vm) -> None:
    with pytest.raises(TypeError, match="need an Actor"):
        lifecycle.request_start(vm, "alice")  # type: ignore[arg-type]


def test_audit_is_append_only(vm) -> None:
    lifecycle.request_start(vm, actor())
    entry = AuditEntry.objects.get()
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.filter(pk=entry.pk).update(actor="mallory")
    # Even raw SQL cannot rewrite history: a trigger refuses UPDATE.
    with pytest.raises(DatabaseError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE kvmmgr_auditentry SET actor = 'mallory'")
    assert AuditEntry.objects.get().actor == "alice"


def test_superuser_is_admin_and_unknown_role_is_refused(db: None) -> None:
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.create_superuser("root", password="x" * 12)
    assert Actor.for_user(root).role == Role.ADMIN
    with pytest.raises(ValueError, match="unknown role"):
        Actor("x", "god")


# --- views ------------------------------------------------------------------------


def test_viewer_post_is_a_403_page_and_changes_nothing(viewer_client: Client, vm) -> None:
    response = viewer_client.post(f"/vm/{vm.uuid}/start/")
    assert response.status_code == 403
    assert b"Not allowed" in response.content and b"viewer role" in response.content
    assert not Job.objects.exists()
    assert viewer_client.get("/audit/").status_code == 403
    assert viewer_client.get("/nodes/add/").status_code == 403


def test_admin_reads_and_filters_the_audit_log(admin_client: Client, vm) -> None:
    lifecycle.request_start(vm, actor("otto", Role.OPERATOR))
    with pytest.raises(AccessDenied):
        lifecycle.request_start(vm, actor("vic", Role.VIEWER))
    page = admin_client.get("/audit/?result=denied")
    assert page.status_code == 200
    assert b"vic" in page.content and b"otto" not in page.content
    assert admin_client.get("/audit/?result=nonsense").status_code == 400


def test_action_url_with_get_is_405(admin_client: Client, vm) -> None:
    assert admin_client.get(f"/vm/{vm.uuid}/start/").status_code == 405
    assert not Job.objects.exists()


# --- adduser ----------------------------------------------------------------------


@pytest.fixture
def htfile(tmp_path: Path, settings) -> Path:
    settings.KVMMGR_HTPASSWD = tmp_path / "htpasswd"
    settings.KVMMGR_HTPASSWD_GROUP = ""
    return settings.KVMMGR_HTPASSWD


def _adduser(monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str = "pw-Secret-123\n") -> str:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    out = io.StringIO()
    call_command("adduser", *args, stdout=out)
    return out.getvalue()


def test_adduser_writes_htpasswd_and_user_together(
    db: None, htfile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "created user ada with the admin role" in _adduser(monkeypatch, "ada", "--role", "admin")
    assert htpasswd.check_password(htfile, "ada", "pw-Secret-123")
    assert oct(htfile.stat().st_mode & 0o777) == "0o640"
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username="ada")
    assert Actor.for_user(user).role == Role.ADMIN and user.check_password("pw-Secret-123")
    assert AuditEntry.objects.get(action="user.add").result == "ok"
    # Again with a new password and role: updated, still one line.
    _adduser(monkeypatch, "ada", "--role", "viewer", stdin="other-Secret-456\n")
    assert htpasswd.check_password(htfile, "ada", "other-Secret-456")
    assert len(htfile.read_text().splitlines()) == 1


def test_adduser_demotes_a_superuser_for_real(
    db: None, htfile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The role is the one source of truth, superuser or not."""
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("boss", password="x" * 12)
    assert "updated user boss with the viewer role" in _adduser(
        monkeypatch, "boss", "--role", "viewer"
    )
    boss = get_user_model().objects.get(username="boss")
    assert Actor.for_user(boss).role == Role.VIEWER
    assert not boss.is_superuser and not boss.is_staff
    _adduser(monkeypatch, "boss", "--role", "admin")
    boss.refresh_from_db()
    assert Actor.for_user(boss).role == Role.ADMIN and boss.is_superuser


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("a:b", "--role", "admin"), "cannot contain ':'"),
        (("a\nb", "--role", "admin"), "line break"),
        (("ada", "--role", "root"), "unknown role 'root'"),
        (("ada", "--role", "admin", "--password", "hunter2"), "refusing a password on the command"),
    ],
)
def test_adduser_bad_input_changes_nothing(
    db: None, htfile: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        _adduser(monkeypatch, *args)
    assert not htfile.exists()
    from django.contrib.auth import get_user_model

    assert not get_user_model().objects.exists()


def test_cli_obeys_the_role_of_kvmmgr_actor(
    vm,
    monkeypatch: pytest.MonkeyPatch,
    htfile: Path,
) -> None:
    _adduser(monkeypatch, "vic", "--role", "viewer")
    monkeypatch.setenv("KVMMGR_ACTOR", "vic")
    with pytest.raises(CommandError, match="refused: vic has the viewer role"):
        call_command("startvm", "web1", stdout=io.StringIO())
    assert not Job.objects.exists()
    monkeypatch.setenv("KVMMGR_ACTOR", "nobody")
    with pytest.raises(CommandError, match="not a kvmmgr user"):
        call_command("startvm", "web1", stdout=io.StringIO())


def test_audit_export(vm, capsys: pytest.CaptureFixture[str]) -> None:
    lifecycle.request_start(vm, actor("otto", Role.OPERATOR))
    out = io.StringIO()
    call_command("audit", "--format", "json", "--user", "otto", stdout=out)
    assert '"action": "vm.start"' in out.getvalue() and '"actor": "otto"' in out.getvalue()
    with pytest.raises(CommandError, match="date"):
        call_command("audit", "--since", "yesterday", stdout=io.StringIO())
