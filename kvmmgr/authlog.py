"""Import the basic-auth failures nginx logged into the audit log.

nginx writes one JSON line per request it refused with 401 *that carried a user
name* (``log_format kvmmgr_auth`` in deploy/nginx; a browser's first request
without credentials is not an attempt). A beat task reads what was added since
its last run: the offset and the file's inode are kept beside the database, so
a rotated log is read from its start.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from django.conf import settings

from kvmmgr.loginguard import record_failure

logger = logging.getLogger(__name__)
HOW = "nginx basic auth"
MAX_LINE = 4096


def _state_path() -> Path:
    return Path(settings.DATA_DIR) / "auth-failures.offset"


def _load_state(path: Path) -> tuple[int, int]:
    try:
        inode, offset = path.read_text().split()
        return int(inode), int(offset)
    except (OSError, ValueError):
        return 0, 0


def import_failures(log: Path, state: Path | None = None) -> int:
    """Record each new failure line of ``log``; returns how many were recorded."""
    state = state or _state_path()
    try:
        stat = log.stat()
    except FileNotFoundError:
        return 0
    inode, offset = _load_state(state)
    if inode != stat.st_ino or offset > stat.st_size:
        inode, offset = stat.st_ino, 0  # a new or rotated file
    recorded = 0
    with log.open("rb") as handle:
        handle.seek(offset)
        for raw in handle:
            if not raw.endswith(b"\n"):
                break  # nginx is still writing this line; read it next time
            offset += len(raw)
            entry = _parse(raw[:MAX_LINE])
            if entry is None:
                continue
            record_failure(
                entry.get("user", ""),
                entry.get("ip", ""),
                HOW,
                params={"at": entry.get("at", ""), "uri": entry.get("uri", "")[:200]},
            )
            recorded += 1
    if (inode, offset) != _load_state(state):
        tmp = state.with_suffix(".tmp")
        tmp.write_text(f"{stat.st_ino} {offset}\n")
        os.replace(tmp, state)
    return recorded


def _parse(raw: bytes) -> dict[str, str] | None:
    try:
        entry = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        logger.warning("auth failure log: unreadable line skipped")
        return None
    if not isinstance(entry, dict):
        return None
    return {key: str(value) for key, value in entry.items()}
