"""VPN actions as jobs: submit, one job per tunnel, the page, the command, failures.

Nodes here answer nothing: their URIs point at port 9 (discard, closed) on
loopback addresses, so ssh is refused at once and no packet leaves the machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jobs import reaper, runner
from jobs.actions import request_abort
from jobs.choices import JobStatus
from jobs.errors import JobConflict
from jobs.models import Job
from kvmmgr.models import AuditEntry, Role
from tests.conftest import client_for, make_user
from tests.support.eager import eager_tasks
from tests.support.factories import actor, make_node
from vpn import jobs, services
from vpn.choices import VpnJobKind, VpnState
from vpn.models import Tunnel, TunnelMember
from vpn.nodectl import VpnError


def _dead_uri(host: str) -> str:
    return f"qemu+ssh://root@{host}:9/system"


@pytest.fixture(autouse=True)
def vpn_dir(tmp_path: Path, settings: object) -> Path:
    settings.KVMMGR_VPN_DIR = tmp_path / "vpn"  # type: ignore[attr-defined]
    return tmp_path / "vpn"


@pytest.fixture
def tunnel(db: None) -> Tunnel:
    """Tunnel t1: server nat1, client nat2, both unreachable."""
    server = make_node(name="nat1", uri=_dead_uri("127.0.0.1"))
    client = make_node(name="nat2", uri=_dead_uri("127.0.0.2"))
    tunnel = services.create_tunnel(
        name="t1", subnet="100.64.0.0/24", server=server, server_endpoint="198.51.100.11"
    )
    services.add_client(tunnel, client)
    return tunnel


@pytest.fixture
def eager_worker() -> Iterator[None]:
    """Jobs run at submit time, as a worker would (needs a transactional test)."""
    with eager_tasks():
        yield


def _member(node: str) -> TunnelMember:
    return TunnelMember.objects.select_related("tunnel", "node").get(node__name=node)


def test_submit_creates_a_vpn_job_locked_on_the_tunnel(tunnel: Tunnel) -> None:
    job = jobs.request_action("nat2", "up", actor())
    job.refresh_from_db()
    assert job.kind == VpnJobKind.VPN_UP and job.status == JobStatus.QUEUED
    assert job.lock_key == "vpn:t1"
    assert job.node is not None and job.node.name == "nat2" and job.vm is None
    assert job.target_name == "tunnel t1 on nat2"
    assert job.params == {"action": "up", "node": "nat2"}
    assert job.requested_by == "alice"
    entry = AuditEntry.objects.get(action="vpn.up")
    assert (entry.result, entry.target, entry.job_id) == ("ok", "nat2", job.pk)


def test_one_active_vpn_job_per_tunnel(tunnel: Tunnel) -> None:
    first = jobs.request_action("nat2", "up", actor())
    # The server is in the same tunnel: up of the client rewrites its files too.
    with pytest.raises(JobConflict, match=rf"Tunnel t1 already has an active job: job #{first.pk}"):
        jobs.request_action("nat1", "stop", actor())
    assert Job.objects.count() == 1
    assert AuditEntry.objects.get(action="vpn.stop").result == "failed"
    runner.execute(first.pk, handler=lambda ctx: None)
    assert jobs.request_action("nat1", "stop", actor()).kind == VpnJobKind.VPN_STOP


def test_unknown_action_or_non_member_is_refused(tunnel: Tunnel) -> None:
    with pytest.raises(ValidationError, match="Unknown VPN action 'status'"):
        jobs.request_action("nat2", "status", actor())
    make_node(name="lonely", uri=_dead_uri("127.0.0.3"))
    with pytest.raises(ValidationError, match="lonely is in no tunnel"):
        jobs.request_action("lonely", "start", actor())
    assert not Job.objects.exists()


def test_handler_records_an_unreachable_node_as_the_job_error(tunnel: Tunnel) -> None:
    job = jobs.request_action("nat2", "up", actor())
    assert runner.execute(job.pk) == JobStatus.FAILED
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    # up starts with the server: that is the node that could not be reached.
    assert job.error.startswith("nat1: 127.0.0.1 is unreachable over ssh")
    assert job.command == "manage.py vpn up nat2"
    assert "$ manage.py vpn up nat2" in job.log and "Traceback" not in job.log
    assert f"failed: {job.error}" in job.log
    assert _member("nat2").state == VpnState.ERROR  # status re-read after the action


def test_handler_records_a_vpn_error_message_not_a_traceback(tunnel: Tunnel) -> None:
    job = jobs.request_action("nat2", "start", actor())
    message = "nat2: no tunnel config installed; run `vpn up` first"
    # A real VpnError needs a node that answers over ssh; inject it at the service seam.
    with mock.patch.object(services, "start", autospec=True, side_effect=VpnError(message)):
        assert runner.execute(job.pk) == JobStatus.FAILED
    job.refresh_from_db()
    assert (job.status, job.error) == (JobStatus.FAILED, message)
    assert job.log.rstrip().endswith(f"failed: {message}")
    assert "Traceback" not in job.log and "internal error" not in job.log


def test_handler_logs_each_line_the_service_returns(tunnel: Tunnel) -> None:
    job = jobs.request_action("nat1", "restart", actor())
    lines = "nat1: OpenVPN started"
    with mock.patch.object(services, "restart", autospec=True, return_value=lines):
        assert runner.execute(job.pk) == JobStatus.SUCCEEDED
    job.refresh_from_db()
    assert job.progress == 100 and "nat1: OpenVPN started" in job.log
    assert job.command == "manage.py vpn restart nat1"


def test_vpn_buttons_need_post_csrf_and_the_admin_role(tunnel: Tunnel) -> None:
    member = _member("nat2")
    url = reverse("vpn:member_action", args=[member.pk, "up"])
    admin = make_user("alice", Role.ADMIN)
    assert client_for(admin).get(url).status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin)
    assert strict.post(url).status_code == 403
    assert client_for(make_user("oscar", Role.OPERATOR)).post(url).status_code == 403
    assert not Job.objects.exists()

    response = client_for(admin).post(url)
    job = Job.objects.get()
    assert response.status_code == 302 and response.url == reverse("jobs:job_detail", args=[job.pk])
    assert (job.kind, job.lock_key, job.node.name) == (VpnJobKind.VPN_UP, "vpn:t1", "nat2")
    assert AuditEntry.objects.filter(action="vpn.up", result="denied").count() == 1

    # A second click while the job is queued: a message, not a 500 and no second job.
    server = _member("nat1")
    again = client_for(admin).post(
        reverse("vpn:member_action", args=[server.pk, "stop"]), follow=True
    )
    assert again.status_code == 200
    assert f"Tunnel t1 already has an active job: job #{job.pk}" in again.content.decode()
    assert Job.objects.count() == 1
    # The VPN page links the tunnel's active job.
    page = client_for(admin).get(reverse("vpn:tunnel_list")).content.decode()
    assert reverse("jobs:job_detail", args=[job.pk]) in page and "Restart</button>" in page


def test_job_pages_and_jobs_command_show_a_vpn_job(tunnel: Tunnel, admin_client, capsys) -> None:
    job = jobs.request_action("nat2", "stop", actor())
    runner.execute(job.pk)
    detail = admin_client.get(reverse("jobs:job_detail", args=[job.pk])).content.decode()
    assert "VPN stop tunnel t1 on nat2" in detail and "node nat2" in detail
    assert "manage.py vpn stop nat2" in detail
    listing = admin_client.get(reverse("jobs:job_list")).content.decode()
    assert "tunnel t1 on nat2" in listing
    call_command("jobs")
    out = capsys.readouterr().out
    assert "vpn_stop" in out and "tunnel t1 on nat2" in out and "failed" in out
    call_command("job", str(job.pk))
    assert "manage.py vpn stop nat2" in capsys.readouterr().out


def test_vpn_command_no_wait_only_queues(tunnel: Tunnel, capsys) -> None:
    call_command("vpn", "stop", "nat2", "--no-wait")
    job = Job.objects.get()
    out = capsys.readouterr().out
    assert f"queued job {job.pk}: VPN stop tunnel t1 on nat2" in out
    assert job.kind == VpnJobKind.VPN_STOP and job.requested_by.startswith("cli")
    with pytest.raises(CommandError, match="Tunnel t1 already has an active job"):
        call_command("vpn", "up", "nat1", "--no-wait")


@pytest.mark.django_db(transaction=True)
def test_vpn_command_waits_prints_the_log_and_fails_non_zero(
    tunnel: Tunnel, eager_worker: None, capsys
) -> None:
    with pytest.raises(CommandError, match=r"failed: nat2: 127.0.0.2 is unreachable over ssh"):
        call_command("vpn", "stop", "nat2")
    out = capsys.readouterr().out
    assert "$ manage.py vpn stop nat2" in out and "nat2: VPN error" in out
    job = Job.objects.get()
    assert f"job {job.pk} failed: nat2: 127.0.0.2 is unreachable" in out


def test_reaper_points_a_dead_vpn_job_at_the_tunnel(tunnel: Tunnel, settings) -> None:
    settings.KVMMGR_JOB_STALE_AFTER = 60
    job = jobs.request_action("nat2", "up", actor())
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    assert reaper.reap_stale_jobs() == [job.pk]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error.endswith("check the tunnel's state (manage.py vpn status)")
    # The tunnel is free again.
    assert jobs.request_action("nat1", "start", actor()).status == JobStatus.QUEUED


def test_only_an_admin_may_abort_vpn_work(tunnel: Tunnel) -> None:
    from kvmmgr.access import AccessDenied

    job = jobs.request_action("nat2", "up", actor())
    with pytest.raises(AccessDenied):
        request_abort(job, actor("oscar", role=Role.OPERATOR))
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    # Nor does the operator's job page offer the button.
    page = client_for(make_user("oscar2", Role.OPERATOR)).get(
        reverse("jobs:job_detail", args=[job.pk])
    )
    assert 'id="abort-form"' not in page.content.decode()
    assert (
        'id="abort-form"'
        in client_for(make_user("alice2", Role.ADMIN))
        .get(reverse("jobs:job_detail", args=[job.pk]))
        .content.decode()
    )
    assert request_abort(job, actor())
    job.refresh_from_db()
    assert job.status == JobStatus.ABORTED
