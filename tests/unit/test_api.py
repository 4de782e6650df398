"""The REST API: tokens, every endpoint for every role, errors as JSON that
change nothing, the audit log naming the token, and the committed schema."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from rest_framework.test import APIClient

from jobs.choices import JobStatus
from jobs.models import Job
from kvmmgr.access import Actor
from kvmmgr.api import tokens
from kvmmgr.models import ApiToken, AuditEntry, Role
from nodes.hypervisor.states import VMState
from nodes.models import Node
from tests.conftest import make_user
from tests.support.factories import make_node, make_vm
from vms.choices import JobKind

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
ROLES = ("viewer", "operator", "admin")


def _client(role: str, name: str | None = None) -> tuple[APIClient, ApiToken]:
    user = make_user(name or f"api-{role}", role)
    new = tokens.create(Actor.system("admin"), user, "ci")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {new.key}")
    return client, new.token


def _online(node: Node) -> Node:
    Node.objects.filter(pk=node.pk).update(last_seen=timezone.now(), last_error="")
    node.refresh_from_db()
    return node


class World:
    """What the endpoints act on: two online ssh nodes, VMs in each state, a job."""

    def __init__(self) -> None:
        self.n1 = _online(make_node(name="n1", uri="qemu+ssh://root@198.51.100.11/system"))
        self.n2 = _online(make_node(name="n2", uri="qemu+ssh://root@198.51.100.12/system"))
        self.spare = make_node(name="spare", uri="test:///default")
        self.running = make_vm(self.n1, name="run1", state=VMState.RUNNING, vnc_port=5900)
        self.stopped = make_vm(self.n1, name="off1", state=VMState.SHUTOFF, persistent=True)
        self.job = Job.objects.create(
            kind=JobKind.START, target_name="off1", lock_key="vm:job-test", vm=self.stopped
        )


ENDPOINTS: list[tuple[str, str, Callable[[World], str], dict, dict[str, int]]] = [
    ("list nodes", "get", lambda w: "/api/v1/nodes/", {}, {r: 200 for r in ROLES}),
    ("node", "get", lambda w: f"/api/v1/nodes/{w.n1.pk}/", {}, {r: 200 for r in ROLES}),
    ("add node", "post", lambda w: "/api/v1/nodes/",
     {"name": "n3", "uri": "qemu+ssh://root@198.51.100.13/system", "enabled": False},
     {"viewer": 403, "operator": 403, "admin": 201}),
    ("edit node", "patch", lambda w: f"/api/v1/nodes/{w.spare.pk}/", {"enabled": False},
     {"viewer": 403, "operator": 403, "admin": 200}),
    ("remove node", "delete", lambda w: f"/api/v1/nodes/{w.spare.pk}/", {},
     {"viewer": 403, "operator": 403, "admin": 204}),
    ("refresh node", "post", lambda w: f"/api/v1/nodes/{w.n1.pk}/refresh/", {},
     {"viewer": 403, "operator": 202, "admin": 202}),
    ("maintenance", "post", lambda w: f"/api/v1/nodes/{w.n2.pk}/maintenance/",
     {"on": True, "reason": "upgrade"}, {"viewer": 403, "operator": 403, "admin": 200}),
    ("evacuation plan", "post", lambda w: f"/api/v1/nodes/{w.n1.pk}/evacuate/",
     {"dry_run": True}, {"viewer": 403, "operator": 403, "admin": 200}),
    ("trust node", "post", lambda w: f"/api/v1/nodes/{w.n1.pk}/trust/",
     {"fingerprint": "SHA256:x"}, {"viewer": 403, "operator": 403, "admin": 400}),
    ("list vms", "get", lambda w: "/api/v1/vms/?state=running", {}, {r: 200 for r in ROLES}),
    ("vm", "get", lambda w: f"/api/v1/vms/{w.running.uuid}/", {}, {r: 200 for r in ROLES}),
    ("create vm", "post", lambda w: "/api/v1/vms/",
     {"node": "n1", "name": "new1", "vcpus": 1, "memory_mib": 128, "media": "pxe"},
     {"viewer": 403, "operator": 403, "admin": 400}),
    ("start", "post", lambda w: f"/api/v1/vms/{w.stopped.uuid}/start/", {},
     {"viewer": 403, "operator": 202, "admin": 202}),
    ("shutdown", "post", lambda w: f"/api/v1/vms/{w.running.uuid}/shutdown/", {"timeout": 30},
     {"viewer": 403, "operator": 202, "admin": 202}),
    ("force off", "post", lambda w: f"/api/v1/vms/{w.running.uuid}/force-off/", {},
     {"viewer": 403, "operator": 202, "admin": 202}),
    ("reboot", "post", lambda w: f"/api/v1/vms/{w.running.uuid}/reboot/", {},
     {"viewer": 403, "operator": 202, "admin": 202}),
    ("delete", "delete", lambda w: f"/api/v1/vms/{w.stopped.uuid}/", {},
     {"viewer": 403, "operator": 403, "admin": 202}),
    ("migrate", "post", lambda w: f"/api/v1/vms/{w.running.uuid}/migrate/",
     {"destination": "n2", "max_downtime_ms": 300},
     {"viewer": 403, "operator": 202, "admin": 202}),
    ("console ticket", "post", lambda w: f"/api/v1/vms/{w.running.uuid}/console/", {},
     {"viewer": 403, "operator": 400, "admin": 400}),  # a ticket needs a login session
    ("list jobs", "get", lambda w: "/api/v1/jobs/?status=queued", {}, {r: 200 for r in ROLES}),
    ("job", "get", lambda w: f"/api/v1/jobs/{w.job.pk}/?log_offset=0", {},
     {r: 200 for r in ROLES}),
    ("abort job", "post", lambda w: f"/api/v1/jobs/{w.job.pk}/abort/", {},
     {"viewer": 403, "operator": 202, "admin": 202}),
    ("post-copy", "post", lambda w: f"/api/v1/jobs/{w.job.pk}/postcopy/", {},
     {"viewer": 403, "operator": 400, "admin": 400}),
    ("tunnels", "get", lambda w: "/api/v1/vpn/tunnels/", {}, {r: 200 for r in ROLES}),
    ("vpn up", "post", lambda w: "/api/v1/vpn/members/n1/up/", {},
     {"viewer": 403, "operator": 403, "admin": 400}),  # n1 is in no tunnel
    ("vm stats", "get", lambda w: f"/api/v1/stats/vms/{w.running.uuid}/?range=1h", {},
     {r: 200 for r in ROLES}),
    ("node stats", "get", lambda w: f"/api/v1/stats/nodes/{w.n1.pk}/?range=1h", {},
     {r: 200 for r in ROLES}),
    ("audit", "get", lambda w: "/api/v1/audit/", {},
     {"viewer": 403, "operator": 403, "admin": 200}),
    ("schema", "get", lambda w: "/api/v1/schema/", {}, {r: 200 for r in ROLES}),
]  # fmt: skip


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("label", "method", "url", "body", "expected"), ENDPOINTS, ids=[e[0] for e in ENDPOINTS]
)
def test_every_endpoint_for_every_role(
    role: str,
    label: str,
    method: str,
    url: Callable[[World], str],
    body: dict,
    expected: dict[str, int],
) -> None:
    world = World()
    client, _ = _client(role)
    jobs_before = Job.objects.count()
    response = getattr(client, method)(url(world), body, format="json")
    assert response.status_code == expected[role], (label, response.content[:400])
    if response.status_code >= 400:
        assert "error" in response.json(), response.content
        assert Job.objects.count() == jobs_before  # a refusal queues nothing
    if response.status_code == 202 and label not in ("refresh node", "abort job"):
        job_url = response.json()["job"]
        assert response["Location"] == job_url
        assert client.get(job_url).status_code == 200


@pytest.mark.parametrize("label", ["list vms", "start"])
def test_without_a_token_or_with_a_revoked_or_expired_one_it_is_401(label: str) -> None:
    world = World()
    _, method, url, body, _ = next(e for e in ENDPOINTS if e[0] == label)
    assert getattr(APIClient(), method)(url(world), body, format="json").status_code == 401
    client, token = _client("admin")
    tokens.revoke(Actor.system("admin"), token)
    response = getattr(client, method)(url(world), body, format="json")
    assert response.status_code == 401 and "revoked" in response.json()["error"]
    client, token = _client("admin", "expiring")
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert getattr(client, method)(url(world), body, format="json").status_code == 401
    bogus = APIClient()
    bogus.credentials(HTTP_AUTHORIZATION="Token kvm_not-a-key")
    assert getattr(bogus, method)(url(world), body, format="json").status_code == 401
    assert not Job.objects.exclude(pk=world.job.pk).exists()


def test_bad_input_is_400_with_field_messages_and_changes_nothing() -> None:
    world = World()
    client, _ = _client("admin")
    response = client.post(
        "/api/v1/nodes/", {"name": "bad name!", "uri": "qemu+ssh://x/system?"}, format="json"
    )
    assert response.status_code == 400
    assert set(response.json()["fields"]) >= {"name", "uri"}, response.json()
    assert not Node.objects.filter(name="bad name!").exists()
    response = client.post(
        f"/api/v1/vms/{world.running.uuid}/migrate/",
        {"destination": "n2", "max_downtime_ms": 5, "compression": "lz4"},
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"max_downtime_ms", "compression"}
    response = client.post(
        f"/api/v1/vms/{world.running.uuid}/migrate/", {"destination": "nowhere"}, format="json"
    )
    assert response.status_code == 400 and "nowhere" in str(response.json()["fields"])
    response = client.post("/api/v1/vms/", {"node": "n1", "name": "x"}, format="json")
    assert response.status_code == 400 and "vcpus" in response.json()["fields"]
    assert client.get("/api/v1/stats/nodes/1/?range=forever").status_code in (400, 404)
    assert client.get(f"/api/v1/jobs/{world.job.pk}/?log_offset=-1").status_code == 400
    assert not Job.objects.exclude(pk=world.job.pk).exists()


def test_a_second_action_on_a_busy_vm_is_409_naming_the_active_job() -> None:
    world = World()
    client, _ = _client("operator")
    first = client.post(f"/api/v1/vms/{world.running.uuid}/reboot/", format="json")
    assert first.status_code == 202
    second = client.post(f"/api/v1/vms/{world.running.uuid}/reboot/", format="json")
    assert second.status_code == 409 and second.json()["active_job"] == first.json()["job"]


def test_changes_are_audited_with_the_tokens_name_and_lists_paginate() -> None:
    world = World()
    client, token = _client("operator", "otto")
    assert client.post(f"/api/v1/vms/{world.stopped.uuid}/start/").status_code == 202
    entry = AuditEntry.objects.filter(action="vm.start").latest("at")
    assert entry.actor == "otto" and "token:ci" in entry.source
    token.refresh_from_db()
    assert token.last_used_at is not None
    for index in range(105):
        make_vm(world.n2, name=f"bulk{index:03d}", state=VMState.SHUTOFF)
    page = client.get("/api/v1/vms/").json()
    assert page["count"] == 107 and len(page["results"]) == 100 and page["next"]
    assert client.get("/api/v1/vms/?node=n2&name=bulk10").json()["count"] == 5


def test_job_detail_gives_the_log_from_an_offset() -> None:
    world = World()
    Job.objects.filter(pk=world.job.pk).update(log="line one\nline two\n", status=JobStatus.RUNNING)
    client, _ = _client("viewer")
    body = client.get(f"/api/v1/jobs/{world.job.pk}/").json()
    assert body["log"] == "line one\nline two\n" and body["log_offset"] == 18
    assert client.get(f"/api/v1/jobs/{world.job.pk}/?log_offset=9").json()["log"] == "line two\n"


def test_apitoken_command_creates_lists_and_revokes() -> None:
    make_user("carol", Role.OPERATOR)
    out = io.StringIO()
    call_command("apitoken", "create", "carol", "ansible", "--expires-days", "30", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    assert key.startswith("kvm_") and len(key) > 40
    stored = ApiToken.objects.get(name="ansible")
    assert key not in stored.key_hash and stored.prefix == key[:8]
    assert tokens.authenticate(key) is not None
    listing = io.StringIO()
    call_command("apitoken", "list", "carol", stdout=listing)
    assert "ansible" in listing.getvalue() and key not in listing.getvalue()
    with pytest.raises(CommandError, match="already has a token named"):
        call_command("apitoken", "create", "carol", "ansible")
    with pytest.raises(CommandError, match="token name"):
        call_command("apitoken", "create", "carol", "bad name")
    call_command("apitoken", "revoke", "carol", "ansible", stdout=io.StringIO())
    assert tokens.authenticate(key) is None


def test_a_user_manages_only_their_own_tokens_on_their_page(
    operator_client: object, viewer_client: object
) -> None:
    response = operator_client.post("/account/tokens/", {"name": "laptop"})  # type: ignore[attr-defined]
    assert response.status_code == 200
    key = response.context["new_key"]
    assert key and key in response.content.decode()
    token = ApiToken.objects.get(name="laptop")
    assert key not in viewer_client.get("/account/tokens/").content.decode()  # type: ignore[attr-defined]
    assert viewer_client.post(f"/account/tokens/{token.pk}/revoke/").status_code == 404  # type: ignore[attr-defined]
    assert operator_client.post(f"/account/tokens/{token.pk}/revoke/").status_code == 302  # type: ignore[attr-defined]
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_the_committed_schema_is_the_generated_one_and_valid(tmp_path: Path) -> None:
    out = tmp_path / "openapi.yaml"
    # Generated against SQLite whatever the suite runs on: integer ranges in the schema
    # follow the database vendor (PostgreSQL's smallint is not SQLite's integer).
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'schema.sqlite3'}"}
    subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn",
         "--file", str(out)],
        cwd=ROOT, check=True, capture_output=True, timeout=120, env=env,
    )  # fmt: skip
    committed = (ROOT / "docs" / "api" / "openapi.yaml").read_text()
    assert out.read_text() == committed, (
        "docs/api/openapi.yaml is stale: regenerate it (on SQLite, the default) with "
        "manage.py spectacular --validate --file docs/api/openapi.yaml"
    )
