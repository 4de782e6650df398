"""The audit log refuses UPDATE at the database level, whoever connects.

DELETE stays possible for the database owner (retention, test flushes); the
application refuses it in the model and queryset.
"""

from __future__ import annotations

from django.db import migrations

# One statement per string: drivers refuse several in one prepared statement.
CREATE = {
    "sqlite": [
        "CREATE TRIGGER kvmmgr_auditentry_append_only BEFORE UPDATE ON kvmmgr_auditentry "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION kvmmgr_auditentry_append_only() RETURNS trigger AS $$ "
        "BEGIN RAISE EXCEPTION 'the audit log is append-only'; END; $$ LANGUAGE plpgsql",
        "CREATE TRIGGER kvmmgr_auditentry_append_only BEFORE UPDATE ON kvmmgr_auditentry "
        "FOR EACH ROW EXECUTE FUNCTION kvmmgr_auditentry_append_only()",
    ],
}
DROP = {
    "sqlite": ["DROP TRIGGER IF EXISTS kvmmgr_auditentry_append_only"],
    "postgresql": [
        "DROP TRIGGER IF EXISTS kvmmgr_auditentry_append_only ON kvmmgr_auditentry",
        "DROP FUNCTION IF EXISTS kvmmgr_auditentry_append_only()",
    ],
}


def forwards(apps, schema_editor):
    for sql in CREATE.get(schema_editor.connection.vendor, []):
        schema_editor.execute(sql, params=None)


def backwards(apps, schema_editor):
    for sql in DROP.get(schema_editor.connection.vendor, []):
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [("kvmmgr", "0001_access")]
    operations = [migrations.RunPython(forwards, backwards)]
