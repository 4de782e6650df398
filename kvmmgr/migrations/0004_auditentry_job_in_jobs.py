# The audit entry's job now points at jobs.Job (the same vms_job table, and no
# database constraint either way): a state-only change, no SQL.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0001_initial"),
        ("kvmmgr", "0003_api_token"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name="auditentry",
                    name="job",
                    field=models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="audit_entries",
                        to="jobs.job",
                    ),
                ),
            ],
        ),
    ]
