"""A job worker in its own process, for tests that kill it mid-job.

The test's database must be committed (``django_db(transaction=True)``) so the
worker sees the job; Celery's dispatch is held back by the caller so the job is
run only by this process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.db import connection

REPO = Path(__file__).resolve().parents[2]

_WORKER = """
import sys
import tests.settings as settings
settings.DATABASES["default"]["NAME"] = sys.argv[1]
import django
django.setup()
from jobs.runner import execute
execute(int(sys.argv[2]))
"""


def start_worker(job_id: int, key_path: Path, known_hosts: Path) -> subprocess.Popen[bytes]:
    """Run ``jobs.execute(job_id)`` in a child process reaching the lab with that key."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "KVMMGR_SSH_KEY": str(key_path),
        "KVMMGR_SSH_KNOWN_HOSTS": str(known_hosts),
    }
    return subprocess.Popen(
        [sys.executable, "-c", _WORKER, str(connection.settings_dict["NAME"]), str(job_id)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
