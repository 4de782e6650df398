"""Moving Job from vms to jobs keeps the rows: the migrations change Django's state only."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

OLD = {"vms": "0009_job_parent_evacuate", "kvmmgr": "0003_api_token", "jobs": None}


def _migrate(at: dict[str, str | None]):  # type: ignore[no-untyped-def]
    """Migrate to every app's latest migration but those of ``at``; returns the state's apps."""
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    targets = [(app, at.get(app, name)) for app, name in leaves]
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state([t for t in targets if t[1] is not None]).apps


@pytest.mark.django_db(transaction=True)
def test_rows_of_the_old_vms_job_are_read_as_jobs_job() -> None:
    with connection.cursor() as cursor:
        before = connection.introspection.get_constraints(cursor, "vms_job")
    old = _migrate(OLD)
    try:
        Node = old.get_model("nodes", "Node")
        OldJob = old.get_model("vms", "Job")
        Audit = old.get_model("kvmmgr", "AuditEntry")
        node = Node.objects.create(name="n1", uri="test:///default")
        parent = OldJob.objects.create(
            kind="evacuate", node=node, target_name="evacuate n1", lock_key="evacuate:n1"
        )
        child = OldJob.objects.create(
            kind="migrate", node=node, target_name="web1", lock_key="vm:w", parent=parent,
            log="hello\n", status="failed",
        )  # fmt: skip
        Audit.objects.create(actor="alice", action="vm.migrate", result="ok", job=child)
    finally:
        new = _migrate({})
    NewJob = new.get_model("jobs", "Job")
    moved = NewJob.objects.get(pk=child.pk)
    assert (moved.kind, moved.log, moved.status, moved.parent_id) == (
        "migrate", "hello\n", "failed", parent.pk,
    )  # fmt: skip
    assert list(NewJob.objects.get(pk=parent.pk).children.values_list("pk", flat=True)) == [
        child.pk
    ]
    assert new.get_model("kvmmgr", "AuditEntry").objects.get().job_id == child.pk
    with connection.cursor() as cursor:
        after = connection.introspection.get_constraints(cursor, "vms_job")
    assert after == before  # same table, indexes and constraints, by name
    with pytest.raises(LookupError):
        new.get_model("vms", "Job")
