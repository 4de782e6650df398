# Job now lives in the jobs app (jobs.0001 took over its state and keeps the table
# vms_job): drop it from this app's state only. No SQL is run.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0001_initial"),
        ("kvmmgr", "0004_auditentry_job_in_jobs"),
        ("vms", "0009_job_parent_evacuate"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[migrations.DeleteModel(name="Job")],
        ),
    ]
