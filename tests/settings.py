"""Settings for the test suite: the real settings with a private data dir."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("KVMMGR_DATA_DIR", tempfile.mkdtemp(prefix="kvmmgr-test-"))

from kvmmgr.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# A file, not :memory:, so a Celery worker started by a test sees the same data.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}  # noqa: F405
CELERY_BROKER_URL = os.environ.get("KVMMGR_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# Runner heartbeats write from a thread; unit tests run inside a transaction, so
# keep the thread quiet unless a test sets a short interval itself.
KVMMGR_JOB_HEARTBEAT = 30.0
