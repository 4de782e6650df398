from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from jobs import reaper, runner
from jobs.actions import request_abort
from jobs.choices import JobStatus
from jobs.context import JobContext
from jobs.errors import JobAborted, JobConflict
from jobs.models import Job
from kvmmgr.models import Role
from nodes.hypervisor import HypervisorError
from tests.conftest import client_for, make_user
from tests.support.factories import actor, make_node, make_vm
from vms.choices import JobKind


def _submit(vm, kind: str = JobKind.START) -> Job:
    return runner.submit(kind, vm=vm, target_name=vm.name, requested_by="alice")


@pytest.mark.django_db
def test_one_active_job_per_vm() -> None:
    vm = make_vm(make_node())
    first = _submit(vm)
    with pytest.raises(JobConflict) as info:
        _submit(vm, JobKind.DELETE)
    assert info.value.active == first
    assert f"job #{first.pk}" in str(info.value)
    runner.execute(first.pk, handler=lambda ctx: None)
    assert _submit(vm, JobKind.DELETE).status == JobStatus.QUEUED


@pytest.mark.django_db
def test_database_refuses_a_second_active_job_for_one_target() -> None:
    vm = make_vm(make_node())
    Job.objects.create(kind="start", vm=vm, target_name=vm.name, lock_key=f"vm:{vm.uuid}")
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.create(
            kind="reboot",
            vm=vm,
            target_name=vm.name,
            lock_key=f"vm:{vm.uuid}",
            status=JobStatus.RUNNING,
        )
    # Finished jobs do not count.
    Job.objects.create(
        kind="reboot",
        vm=vm,
        target_name=vm.name,
        lock_key=f"vm:{vm.uuid}",
        status=JobStatus.FAILED,
    )


@pytest.mark.django_db
def test_create_jobs_lock_the_name() -> None:
    runner.submit(JobKind.CREATE, target_name="web1", requested_by="a", node=make_node())
    with pytest.raises(JobConflict):
        runner.submit(JobKind.CREATE, target_name="web1", requested_by="b")


@pytest.mark.django_db
def test_successful_job_records_command_progress_and_log() -> None:
    job = _submit(make_vm(make_node()))

    def handler(ctx: JobContext) -> None:
        ctx.set_command(["virsh", "-c", "qemu:///system", "start", "my vm"])
        ctx.progress(50, phase="starting")

    assert runner.execute(job.pk, handler=handler) == JobStatus.SUCCEEDED
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.progress == 100
    assert job.command == "virsh -c qemu:///system start 'my vm'"
    assert "$ virsh" in job.log and job.log.rstrip().endswith("done")
    assert job.started_at and job.finished_at and job.duration_seconds is not None
    assert job.worker


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("exc", "status", "error"),
    [
        (HypervisorError("node1: Domain not found"), JobStatus.FAILED, "node1: Domain not found"),
        (RuntimeError("boom"), JobStatus.FAILED, "internal error: RuntimeError('boom')"),
        (JobAborted("aborted by request"), JobStatus.ABORTED, "aborted by request"),
    ],
)
def test_any_exception_ends_the_job(exc: Exception, status: str, error: str) -> None:
    job = _submit(make_vm(make_node()))

    def handler(ctx: JobContext) -> None:
        raise exc

    assert runner.execute(job.pk, handler=handler) == status
    job.refresh_from_db()
    assert (job.status, job.error) == (status, error)
    assert job.finished_at is not None


@pytest.mark.django_db
def test_a_job_runs_once_even_if_delivered_twice() -> None:
    job = _submit(make_vm(make_node()))
    calls: list[int] = []
    assert runner.execute(job.pk, handler=lambda ctx: calls.append(1)) == JobStatus.SUCCEEDED
    assert runner.execute(job.pk, handler=lambda ctx: calls.append(1)) is None
    assert calls == [1]


@pytest.mark.django_db
def test_abort_queued_job_at_once_and_running_job_on_request() -> None:
    vm = make_vm(make_node())
    queued = _submit(vm)
    assert request_abort(queued, actor())
    queued.refresh_from_db()
    assert queued.status == JobStatus.ABORTED
    running = _submit(vm)

    def handler(ctx: JobContext) -> None:
        request_abort(ctx.job, actor())
        ctx.check_abort()

    assert runner.execute(running.pk, handler=handler) == JobStatus.ABORTED
    assert not request_abort(Job.objects.get(pk=running.pk), actor())


@pytest.mark.django_db(transaction=True)
@override_settings(KVMMGR_JOB_HEARTBEAT=0.05)
def test_heartbeat_advances_while_the_handler_works() -> None:
    # Created directly: submit() would hand the job to the broker on commit.
    vm = make_vm(make_node())
    job = Job.objects.create(kind=JobKind.START, vm=vm, target_name=vm.name, lock_key="vm:x")
    seen: list[object] = []

    def handler(ctx: JobContext) -> None:
        first = Job.objects.get(pk=ctx.job.pk).heartbeat_at
        time.sleep(0.4)
        seen.extend([first, Job.objects.get(pk=ctx.job.pk).heartbeat_at])

    runner.execute(job.pk, handler=handler)
    assert seen[1] > seen[0]


@pytest.mark.django_db
@override_settings(KVMMGR_JOB_STALE_AFTER=60)
def test_reaper_fails_jobs_whose_worker_died() -> None:
    node = make_node()
    stale = _submit(make_vm(node))
    fresh = _submit(make_vm(node))
    Job.objects.filter(pk=stale.pk).update(
        status=JobStatus.RUNNING, heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    Job.objects.filter(pk=fresh.pk).update(status=JobStatus.RUNNING, heartbeat_at=timezone.now())
    assert reaper.reap_stale_jobs() == [stale.pk]
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == JobStatus.FAILED and "worker running this job stopped" in stale.error
    assert "reaper:" in stale.log
    assert fresh.status == JobStatus.RUNNING
    # The late worker cannot overwrite the reaper's verdict.
    runner._finish(stale.pk, JobStatus.SUCCEEDED)
    stale.refresh_from_db()
    assert stale.status == JobStatus.FAILED


@pytest.mark.django_db
def test_job_pages_and_status_json(admin_client: Client) -> None:
    job = _submit(make_vm(make_node(), name="web1"))
    runner.execute(job.pk, handler=lambda ctx: ctx.log("hello"))
    listing = admin_client.get(reverse("jobs:job_list")).content.decode()
    assert "web1" in listing and "succeeded" in listing
    detail = admin_client.get(reverse("jobs:job_detail", args=[job.pk])).content.decode()
    assert "hello" in detail
    data = admin_client.get(reverse("jobs:job_status", args=[job.pk]), {"log_offset": 3}).json()
    assert data["status"] == "succeeded" and not data["active"]
    assert data["log_offset"] == len(Job.objects.get(pk=job.pk).log)
    assert admin_client.get(reverse("jobs:job_abort", args=[job.pk])).status_code == 405
    response = admin_client.post(reverse("jobs:job_abort", args=[job.pk]))
    assert response.status_code == 302


@pytest.mark.django_db
def test_job_page_offers_abort_only_to_roles_that_may_abort() -> None:
    job = _submit(make_vm(make_node(), name="web2"))
    url = reverse("jobs:job_detail", args=[job.pk])
    seen = {
        role: 'id="abort-form"' in client_for(make_user(role, role)).get(url).content.decode()
        for role in (Role.VIEWER, Role.OPERATOR, Role.ADMIN)
    }
    assert seen == {Role.VIEWER: False, Role.OPERATOR: True, Role.ADMIN: True}
    # Finished jobs offer nothing to abort, whoever looks.
    runner.execute(job.pk, handler=lambda ctx: None)
    assert (
        'id="abort-form"' not in client_for(make_user("boss", Role.ADMIN)).get(url).content.decode()
    )


@pytest.mark.django_db
def test_jobs_and_job_commands(capsys) -> None:
    job = _submit(make_vm(make_node(), name="db1"))
    runner.execute(job.pk, handler=lambda ctx: (_ for _ in ()).throw(HypervisorError("gone")))
    call_command("jobs")
    out = capsys.readouterr().out
    assert "db1" in out and "failed" in out and "gone" in out
    call_command("job", str(job.pk), "--json")
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "failed" and data["error"] == "gone"
