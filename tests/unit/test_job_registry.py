"""The jobs registry: kinds, handlers, abort roles, stale policy and extra actions by kind."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.urls import reverse
from django.utils import timezone
from django.utils.module_loading import import_string

from jobs import actions, reaper, registry, runner
from jobs.choices import JobStatus
from jobs.errors import UnknownJobKind
from jobs.models import Job
from jobs.registry import JobAction, JobType, OnStale
from kvmmgr.access import AccessDenied, Permission
from kvmmgr.models import Role
from tests.conftest import client_for, make_user
from tests.support.factories import actor, make_node, make_vm
from vms.choices import JobKind
from vpn.choices import VpnJobKind

pytestmark = pytest.mark.django_db

TEST_KIND = "test_resumable"


@pytest.fixture
def resumable() -> Iterator[JobType]:
    """A kind of this test's own that the reaper queues again."""
    job_type = JobType(
        kind=TEST_KIND,
        label="resumable test",
        handler=lambda ctx: ctx.log("ran"),
        on_stale=OnStale.REQUEUE,
        lock_key=lambda vm, name: f"test:{name}",
    )
    registry.register(job_type)
    yield job_type
    registry.unregister(TEST_KIND)


def _stale(job: Job) -> None:
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, heartbeat_at=timezone.now() - timedelta(minutes=10)
    )


def test_every_app_kind_is_registered_with_a_label() -> None:
    kinds = {t.kind for t in registry.types()}
    assert {k.value for k in JobKind} | {k.value for k in VpnJobKind} <= kinds
    assert registry.label(JobKind.EVACUATE) == "evacuate node"
    assert registry.label("no_such_kind") == "no_such_kind"


def test_every_registered_handler_and_action_imports() -> None:
    """Handlers and actions named by dotted path resolve (a moved module breaks here, not
    in a worker at run time)."""
    for job_type in registry.types():
        assert callable(job_type.resolve_handler()), job_type.kind
        for action in job_type.actions:
            run = import_string(action.run) if isinstance(action.run, str) else action.run
            assert callable(run), (job_type.kind, action.name)


def test_an_unregistered_kind_fails_clearly() -> None:
    with pytest.raises(UnknownJobKind, match="no job kind 'no_such_kind' is registered"):
        runner.submit("no_such_kind", target_name="x", requested_by="a", lock_key="x")
    assert not Job.objects.exists()
    # A row of a kind no app registers any more (its app was removed) fails when it runs.
    job = Job.objects.create(kind="no_such_kind", target_name="x", lock_key="x")
    assert runner.execute(job.pk) == JobStatus.FAILED
    job.refresh_from_db()
    assert "no job kind 'no_such_kind' is registered" in job.error
    assert "Traceback" not in job.log


def test_registering_a_kind_twice_differently_is_an_error(resumable: JobType) -> None:
    registry.register(resumable)  # the same declaration again is harmless
    with pytest.raises(ImproperlyConfigured):
        registry.register(JobType(kind=TEST_KIND, label="other", handler="x.y"))


def test_a_registered_handler_runs(resumable: JobType) -> None:
    job = runner.submit(TEST_KIND, target_name="t1", requested_by="a")
    assert job.lock_key == "test:t1"
    assert runner.execute(job.pk) == JobStatus.SUCCEEDED
    assert "ran" in Job.objects.get(pk=job.pk).log


def test_a_stale_job_of_a_requeue_kind_is_queued_again(resumable: JobType) -> None:
    job = runner.submit(TEST_KIND, target_name="t1", requested_by="a")
    _stale(job)
    failing = Job.objects.create(kind=JobKind.START, target_name="vm1", lock_key="vm:1")
    _stale(failing)
    assert sorted(reaper.reap_stale_jobs()) == sorted([job.pk, failing.pk])
    job.refresh_from_db()
    failing.refresh_from_db()
    assert (job.status, job.worker, job.heartbeat_at) == (JobStatus.QUEUED, "", None)
    assert "queued again to resume" in job.log
    assert failing.status == JobStatus.FAILED
    assert failing.error.endswith("check the VM's state on its node")


def test_the_evacuation_kind_requeues_and_migration_marks_its_dead_worker() -> None:
    assert registry.get(JobKind.EVACUATE).on_stale == OnStale.REQUEUE
    assert registry.get(JobKind.MIGRATE).on_stale == OnStale.FAIL
    job = Job.objects.create(kind=JobKind.MIGRATE, target_name="vm1", lock_key="vm:1")
    _stale(job)
    assert reaper.reap_stale_jobs() == [job.pk]
    assert Job.objects.get(pk=job.pk).params["worker_died"] is True


@pytest.mark.parametrize(
    ("kind", "permission"),
    [
        (JobKind.START, Permission.JOB_ABORT),
        (JobKind.MIGRATE, Permission.JOB_ABORT),
        (JobKind.EVACUATE, Permission.NODE_MANAGE),
        (VpnJobKind.VPN_UP, Permission.VPN_MANAGE),
        ("no_such_kind", Permission.JOB_ABORT),
    ],
)
def test_abort_permission_by_kind(kind: str, permission: Permission) -> None:
    job = Job.objects.create(kind=kind, target_name="t", lock_key=f"k:{kind}")
    assert actions.abort_permission(job) == permission


def test_an_operator_may_abort_a_vm_job_but_not_an_evacuation() -> None:
    operator = actor("oscar", role=Role.OPERATOR)
    start = Job.objects.create(kind=JobKind.START, target_name="vm1", lock_key="vm:1")
    assert actions.request_abort(start, operator)
    evacuation = Job.objects.create(kind=JobKind.EVACUATE, target_name="n1", lock_key="ev:n1")
    with pytest.raises(AccessDenied):
        actions.request_abort(evacuation, operator)
    assert Job.objects.get(pk=evacuation.pk).status == JobStatus.QUEUED


def test_postcopy_is_offered_only_by_the_kinds_that_declare_it() -> None:
    assert [a.name for a in registry.get(JobKind.MIGRATE).actions] == ["postcopy"]
    declaring = {t.kind for t in registry.types() if t.action("postcopy")}
    assert declaring == {JobKind.MIGRATE}
    admin = actor("alice", role=Role.ADMIN)
    vm = make_vm(make_node())
    migrate = Job.objects.create(
        kind=JobKind.MIGRATE, vm=vm, target_name=vm.name, lock_key="vm:a",
        status=JobStatus.RUNNING, params={"postcopy": True},
    )  # fmt: skip
    start = Job.objects.create(
        kind=JobKind.START, vm=vm, target_name=vm.name, lock_key="vm:b",
        status=JobStatus.RUNNING, params={"postcopy": True},
    )  # fmt: skip
    assert [a.name for a in actions.offered_actions(migrate, admin)] == ["postcopy"]
    assert actions.offered_actions(start, admin) == []
    # Not to a role that may not migrate.
    assert actions.offered_actions(migrate, actor("vera", role=Role.VIEWER)) == []
    with pytest.raises(ValidationError, match="has no postcopy action"):
        actions.perform(start, "postcopy", admin)
    with pytest.raises(AccessDenied):
        actions.perform(start, "postcopy", actor("vera", role=Role.VIEWER))
    actions.perform(migrate, "postcopy", admin)
    assert Job.objects.get(pk=migrate.pk).postcopy_requested
    # The page shows the button on the migration only; the URL 404s for other kinds.
    client = client_for(make_user("alice2", Role.ADMIN))
    page = client.get(reverse("jobs:job_detail", args=[migrate.pk])).content.decode()
    assert 'id="postcopy-form"' in page
    page = client.get(reverse("jobs:job_detail", args=[start.pk])).content.decode()
    assert 'id="postcopy-form"' not in page
    assert client.post(reverse("jobs:job_action", args=[start.pk, "postcopy"])).status_code == 404


def test_an_action_declared_by_a_test_kind(resumable: JobType) -> None:
    calls: list[int] = []
    with_action = JobType(
        kind="test_action",
        label="with an action",
        handler="x.y",
        lock_key=lambda vm, name: name,
        actions=(
            JobAction(
                name="poke",
                label="Poke",
                permission=Permission.JOB_ABORT,
                run=lambda job, who: calls.append(job.pk),
                done="Poked",
            ),
        ),
    )
    registry.register(with_action)
    try:
        job = runner.submit("test_action", target_name="p", requested_by="a")
        assert actions.perform(job, "poke", actor()).done == "Poked"
        assert calls == [job.pk]
    finally:
        registry.unregister("test_action")


def test_children_are_listed_on_the_parents_page(admin_client) -> None:
    from jobs import children

    parent = Job.objects.create(kind=JobKind.EVACUATE, target_name="evacuate n1", lock_key="e")
    child = Job.objects.create(kind=JobKind.MIGRATE, target_name="web1", lock_key="vm:w")
    children.adopt(parent, child)
    assert list(children.active_children(parent)) == [child]
    page = admin_client.get(reverse("jobs:job_detail", args=[parent.pk])).content.decode()
    assert 'id="job-children"' in page and reverse("jobs:job_detail", args=[child.pk]) in page
    child_page = admin_client.get(reverse("jobs:job_detail", args=[child.pk])).content.decode()
    assert f"job #{parent.pk}" in child_page
    assert children.abort_children(parent, actor("alice", role=Role.ADMIN)) == 1
    assert not children.active_children(parent).exists()
