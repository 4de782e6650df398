"""The test database as a URL, for processes the tests start (Celery workers)."""

from __future__ import annotations

from django.db import connection


def worker_database_url() -> str:
    """``DATABASE_URL`` naming the database this test runs on (SQLite file or PostgreSQL)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
