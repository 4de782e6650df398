"""Failed logins: recorded in the audit log, and an address that
keeps failing is refused without its password being checked."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from kvmmgr import authlog, loginguard
from kvmmgr.models import AuditEntry, AuditResult

PASSWORD = "right-Password-1"


@pytest.fixture
def alice(db: None) -> User:
    return User.objects.create_user("alice", password=PASSWORD)


def _login(client: Client, password: str, address: str = "198.51.100.7") -> int:
    response = client.post(
        reverse("login"), {"username": "alice", "password": password}, REMOTE_ADDR=address
    )
    return response.status_code


def _failures() -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=loginguard.FAILED_LOGIN).order_by("at"))


def test_each_failed_login_is_in_the_audit_log(alice: User, client: Client) -> None:
    assert _login(client, "Tr0ub4dor-guess") == 200
    [entry] = _failures()
    assert (entry.actor, entry.source, entry.result) == ("alice", "198.51.100.7", "denied")
    assert entry.target == "login form" and "wrong password" in entry.detail
    # The password tried is in no field.
    assert "Tr0ub4dor" not in json.dumps(entry.params) + entry.detail + entry.target


def test_an_address_over_the_limit_waits_even_with_the_right_password(
    alice: User, client: Client, settings: object
) -> None:
    settings.KVMMGR_LOGIN_MAX_FAILURES = 3  # type: ignore[attr-defined]
    settings.KVMMGR_LOGIN_LOCKOUT_SECONDS = 2  # type: ignore[attr-defined]
    for _ in range(3):
        assert _login(client, "wrong") == 200
    response = client.post(
        reverse("login"), {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="198.51.100.7"
    )
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert len(_failures()) == 3  # the refused try was not checked, so not a failure
    # Another address is not locked out by this one.
    assert _login(Client(), PASSWORD, address="198.51.100.8") == 302
    time.sleep(2.1)
    assert _login(client, PASSWORD) == 302


def test_lockout_counts_only_the_window(alice: User, client: Client, settings: object) -> None:
    settings.KVMMGR_LOGIN_MAX_FAILURES = 2  # type: ignore[attr-defined]
    _login(client, "wrong")
    assert loginguard.lockout_seconds("198.51.100.7") == 0
    _login(client, "wrong")
    wait = loginguard.lockout_seconds("198.51.100.7")
    assert 890 <= wait <= 900


def _nginx_line(**fields: str) -> str:
    return json.dumps({"at": "2026-12-06T08:00:00+00:00", "uri": "/", **fields}) + "\n"


@pytest.mark.django_db
def test_nginx_failures_are_imported_once_and_after_rotation(tmp_path: Path) -> None:
    log, state = tmp_path / "auth-failures.log", tmp_path / "offset"
    assert authlog.import_failures(log, state) == 0  # no log yet
    log.write_text(
        _nginx_line(ip="198.51.100.9", user="root")
        + _nginx_line(ip="198.51.100.9", user='x"; DROP')
        + '{"ip": "198.51.100.9", "user": "half'  # nginx is still writing it
    )
    assert authlog.import_failures(log, state) == 2
    assert authlog.import_failures(log, state) == 0
    entries = _failures()
    assert [e.actor for e in entries] == ["root", 'x"; DROP']
    assert all(e.target == "nginx basic auth" and e.result == AuditResult.DENIED for e in entries)
    assert entries[0].params == {"at": "2026-12-06T08:00:00+00:00", "uri": "/"}
    with log.open("a") as handle:
        handle.write('", "uri": "/x"}\n')
    assert authlog.import_failures(log, state) == 1
    # Rotated: a new, shorter file is read from its start.
    log.unlink()
    log.write_text(_nginx_line(ip="198.51.100.10", user="bob") + "not json\n")
    assert authlog.import_failures(log, state) == 1
    assert _failures()[-1].actor == "bob"
