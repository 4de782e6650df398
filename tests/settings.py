"""Settings for the test suite: the real settings with a private data dir."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("KVMMGR_DATA_DIR", tempfile.mkdtemp(prefix="kvmmgr-test-"))

from kvmmgr.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
