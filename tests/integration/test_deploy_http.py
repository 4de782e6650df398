"""The production stack over HTTP: nginx basic auth -> uwsgi param REMOTE_USER -> roles.

Runs against ``deployed_site`` (tests/support/deploysite.py): real nginx and uwsgi
started from the deploy/ templates, users created with ``manage.py adduser``.
"""

from __future__ import annotations

import base64
import json
import time

from tests.support.deploysite import NODE_NAME, USERS, Site, wait_for

OFF_UUID = "6b2f3a62-5c1e-4a7e-9a55-2f4d2e7d0001"
ON_UUID = "6b2f3a62-5c1e-4a7e-9a55-2f4d2e7d0002"


def _state(site: Site, uuid: str) -> str:
    return site.query(
        "SELECT state FROM vms_virtualmachine WHERE replace(uuid, '-', '') = ?",
        (uuid.replace("-", ""),),
    )[0][0]


def _jobs(site: Site) -> int:
    return site.query("SELECT count(*) FROM vms_job")[0][0]


def test_no_credentials_is_401_and_wrong_password_too(deployed_site: Site) -> None:
    anonymous = deployed_site.browser()
    response = anonymous.get("/")
    assert response.status == 401
    assert response.headers["www-authenticate"].startswith("Basic")
    assert deployed_site.browser("ada", "wrong").get("/").status == 401
    # Static files sit behind the same door.
    assert anonymous.get("/static/css/kvmmgr.css").status == 401


def test_credentials_open_the_vm_list_with_security_headers(deployed_site: Site) -> None:
    response = deployed_site.browser("vic").get("/")
    assert response.status == 200
    assert "keep-off" in response.body and NODE_NAME in response.body
    assert 'id="whoami">vic<' in response.body and "(viewer)" in response.body
    headers = response.headers
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "server" not in headers or "nginx/" not in headers["server"]
    static = deployed_site.browser("vic").get("/static/css/kvmmgr.css")
    assert static.status == 200 and "--accent" in static.body


def test_forged_identity_headers_change_nothing(deployed_site: Site) -> None:
    forged = {"Remote-User": "ada", "X-Remote-User": "ada", "Remote_User": "ada"}
    # Without basic auth a forged header is still a 401.
    assert deployed_site.browser().get("/", headers=forged).status == 401
    # As the viewer, claiming to be the admin: still the viewer, still refused.
    viewer = deployed_site.browser("vic")
    page = viewer.get("/", headers=forged)
    assert page.status == 200 and 'id="whoami">vic<' in page.body
    before = _jobs(deployed_site)
    refused = viewer.post(f"/vm/{OFF_UUID}/start/", headers=forged)
    assert refused.status == 403
    assert _jobs(deployed_site) == before
    denied = deployed_site.audit(user="vic", action="vm.start", result="denied")
    assert denied and denied[-1]["target"] == "keep-off"
    assert not deployed_site.audit(user="ada", action="vm.start", result="denied")


def test_viewer_cannot_post_an_action(deployed_site: Site) -> None:
    viewer = deployed_site.browser("vic")
    before = (_jobs(deployed_site), _state(deployed_site, OFF_UUID))
    response = viewer.post(f"/vm/{OFF_UUID}/start/")
    assert response.status == 403
    assert "viewer role" in response.body and "Not allowed" in response.body
    assert viewer.post("/nodes/add/", {"name": "evil", "uri": "test:///default"}).status == 403
    assert (_jobs(deployed_site), _state(deployed_site, OFF_UUID)) == before
    assert deployed_site.query("SELECT count(*) FROM nodes_node WHERE name='evil'")[0][0] == 0
    # The viewer sees no action buttons and no audit link.
    page = viewer.get("/").body
    assert "/start/" not in page and "/audit/" not in page
    assert viewer.get("/audit/").status == 403


def test_missing_csrf_is_403_and_changes_nothing(deployed_site: Site) -> None:
    operator = deployed_site.browser("otto")
    operator.get("/")
    before = _jobs(deployed_site)
    response = operator.request(
        "POST", f"/vm/{OFF_UUID}/start/", data={}, headers={"Referer": deployed_site.url + "/"}
    )
    assert response.status == 403 and "CSRF" in response.body
    assert _jobs(deployed_site) == before


def test_action_url_with_get_is_refused(deployed_site: Site) -> None:
    before = _jobs(deployed_site)
    response = deployed_site.browser("ada").get(f"/vm/{OFF_UUID}/start/")
    assert response.status == 405
    assert _jobs(deployed_site) == before


def test_operator_starts_a_vm_and_the_audit_names_the_basic_auth_user(
    deployed_site: Site,
) -> None:
    operator = deployed_site.browser("otto")
    response = operator.post(f"/vm/{OFF_UUID}/start/", {"next": "/"})
    assert response.status == 302, response.body
    entries = deployed_site.audit(action="vm.start", result="ok", target="keep-off")
    assert entries, "no audit entry for the start"
    entry = entries[-1]
    assert entry["actor"] == "otto" and entry["role"] == "operator"
    assert entry["source"] == "127.0.0.1" and entry["job_id"]
    job = deployed_site.query("SELECT requested_by FROM vms_job WHERE id = ?", (entry["job_id"],))
    assert job == [("otto",)]
    # The admin reads it in the audit page, filtered by job; the job page links there.
    admin = deployed_site.browser("ada")
    page = admin.get(f"/audit/?job={entry['job_id']}")
    assert page.status == 200 and "otto" in page.body and "vm.start" in page.body
    assert f"/audit/?job={entry['job_id']}" in admin.get(f"/jobs/{entry['job_id']}/").body
    # But the operator may not delete.
    assert operator.post(f"/vm/{ON_UUID}/delete/", {"force_off": "on"}).status == 403


def test_user_unknown_to_django_gets_a_clear_403(deployed_site: Site) -> None:
    # In htpasswd (so nginx lets it through) but no kvmmgr account: refused with a reason.
    from kvmmgr import htpasswd

    htpasswd.set_entry(
        deployed_site.root / "data" / "htpasswd", "ghost", "ghost-pass-123", group="www-data"
    )
    response = deployed_site.browser("ghost", "ghost-pass-123").get("/")
    assert response.status == 403 and "no active account" in response.body


def test_basic_auth_header_is_what_nginx_checks(deployed_site: Site) -> None:
    # A syntactically valid header for a user that does not exist: 401 from nginx.
    token = base64.b64encode(b"nobody:nothing").decode()
    response = deployed_site.browser().get("/", headers={"Authorization": f"Basic {token}"})
    assert response.status == 401
    assert set(USERS) <= {
        line.split(":")[0]
        for line in (deployed_site.root / "data" / "htpasswd").read_text().splitlines()
    }


def test_password_guessing_is_slowed_and_lands_in_the_audit_log(deployed_site: Site) -> None:
    """nginx answers 429 past the per-address burst, and each refused basic-auth try
    that named a user reaches the audit log (imported by the beat task)."""
    guesser = deployed_site.browser("mallory", "guess")
    statuses = [guesser.get("/").status for _ in range(80)]
    assert statuses[0] == 401
    assert 429 in statuses, statuses
    refused = statuses.count(401)
    assert refused < 80

    def imported() -> bool:
        return len(deployed_site.audit(action="auth.failed", user="mallory")) >= refused

    wait_for(imported, 30, "the refused logins in the audit log")
    entries = deployed_site.audit(action="auth.failed", user="mallory")
    assert {(e["source"], e["target"], e["result"]) for e in entries} == {
        ("127.0.0.1", "nginx basic auth", "denied")
    }
    assert not any("guess" in json.dumps(e) for e in entries)
    # A browser's first request without credentials is not an attempt.
    before = len(deployed_site.audit(action="auth.failed"))
    time.sleep(5)  # the burst refills (10 requests a second)
    assert deployed_site.browser().get("/").status == 401
    assert deployed_site.browser("vic").get("/").status == 200
    time.sleep(2)
    assert len(deployed_site.audit(action="auth.failed")) == before


def test_the_api_takes_a_token_without_basic_auth_and_a_login_with_it(
    deployed_site: Site,
) -> None:
    """Through nginx: 'Authorization: Token' skips the basic-auth prompt (kvmmgr checks
    the token), a basic-auth login uses the API as itself, nobody else gets in."""
    key = deployed_site.manage("apitoken", "create", "vic", "reader").stdout.split()[-1]
    reader = deployed_site.browser()
    token_header = {"Authorization": f"Token {key}"}
    listing = reader.get("/api/v1/vms/", headers=token_header)
    assert listing.status == 200, listing.body
    names = {vm["name"] for vm in json.loads(listing.body)["results"]}
    assert {"keep-off"} <= names
    # The viewer's token cannot start a VM; the refusal is JSON, audited with the token.
    refused = reader.request("POST", f"/api/v1/vms/{OFF_UUID}/start/", headers=token_header)
    assert refused.status == 403 and "viewer role" in json.loads(refused.body)["error"]
    entry = deployed_site.audit(action="vm.start", user="vic")[-1]
    assert entry["result"] == "denied" and entry["source"] == "127.0.0.1 token:reader"
    # A bad token is kvmmgr's 401, not the basic-auth prompt; no credentials: nginx's.
    bad = reader.get("/api/v1/vms/", headers={"Authorization": "Token kvm_nope"})
    assert bad.status == 401 and "www-authenticate" not in {
        k for k, v in bad.headers.items() if v.startswith("Basic")
    }
    assert reader.get("/api/v1/vms/").status == 401
    assert reader.get("/api/v1/vms/").headers["www-authenticate"].startswith("Basic")
    # A basic-auth user reads the API (and the schema) as themselves.
    otto = deployed_site.browser("otto")
    assert otto.get("/api/v1/vms/").status == 200
    assert "openapi: 3" in otto.get("/api/v1/schema/").body
    # A token does not open the pages: only /api/ skips basic auth.
    assert reader.get("/", headers=token_header).status == 401
