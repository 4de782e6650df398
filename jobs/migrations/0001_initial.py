# The Job model moved here from vms: its table (vms_job), columns, indexes and
# constraints stay as they are. This migration only tells Django's state that the
# model is now jobs.Job; vms.0010 removes it from vms's state. No SQL is run.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("nodes", "0005_maintenance"),
        ("vms", "0009_job_parent_evacuate"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="Job",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("kind", models.CharField(max_length=32)),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("queued", "queued"),
                                    ("running", "running"),
                                    ("succeeded", "succeeded"),
                                    ("failed", "failed"),
                                    ("aborted", "aborted"),
                                ],
                                db_index=True,
                                default="queued",
                                max_length=16,
                            ),
                        ),
                        (
                            "target_name",
                            models.CharField(
                                help_text="VM name, kept after the VM is gone", max_length=255
                            ),
                        ),
                        ("lock_key", models.CharField(max_length=300)),
                        ("params", models.JSONField(blank=True, default=dict)),
                        ("progress", models.PositiveSmallIntegerField(default=0)),
                        ("progress_detail", models.JSONField(blank=True, default=dict)),
                        ("log", models.TextField(blank=True)),
                        (
                            "command",
                            models.TextField(
                                blank=True, help_text="equivalent command an admin could run"
                            ),
                        ),
                        ("error", models.TextField(blank=True)),
                        ("requested_by", models.CharField(blank=True, max_length=150)),
                        ("worker", models.CharField(blank=True, max_length=255)),
                        ("abort_requested", models.BooleanField(default=False)),
                        ("postcopy_requested", models.BooleanField(default=False)),
                        ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                        ("started_at", models.DateTimeField(blank=True, null=True)),
                        ("heartbeat_at", models.DateTimeField(blank=True, null=True)),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "node",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="jobs",
                                to="nodes.node",
                            ),
                        ),
                        (
                            "parent",
                            models.ForeignKey(
                                blank=True,
                                help_text="the job that started this one (an evacuation's migrations)",
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="children",
                                to="jobs.job",
                            ),
                        ),
                        (
                            "vm",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="jobs",
                                to="vms.virtualmachine",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "vms_job",
                        "ordering": ["-created_at", "-pk"],
                        "constraints": [
                            models.UniqueConstraint(
                                condition=models.Q(("status__in", ["queued", "running"])),
                                fields=("lock_key",),
                                name="one_active_job_per_target",
                            ),
                            models.CheckConstraint(
                                condition=models.Q(("progress__lte", 100)),
                                name="job_progress_at_most_100",
                            ),
                        ],
                    },
                ),
            ],
        ),
    ]
