"""The ssh client configuration the manager uses for every qemu+ssh connection.

libvirt's ssh transport has no connect timeout and passes no options we could
set per URI, so the manager keeps its own ssh_config file and makes libvirt run
ssh through a tiny wrapper that adds ``-F`` (see ``bin/kvmmgr-ssh``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from django.conf import settings

WRAPPER = Path(__file__).resolve().parent / "bin" / "kvmmgr-ssh"


def config_path() -> Path:
    return Path(settings.DATA_DIR) / "ssh" / "config"


def render_config() -> str:
    timeout = max(1, math.ceil(settings.KVMMGR_CONNECT_TIMEOUT))
    return "\n".join(
        [
            "# Written by kvmmgr; changes are overwritten.",
            "Host *",
            f"    ConnectTimeout {timeout}",
            "    ServerAliveInterval 5",
            "    ServerAliveCountMax 3",
            "    BatchMode yes",
            f"    IdentityFile {settings.KVMMGR_SSH_KEY}",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {settings.KVMMGR_SSH_KNOWN_HOSTS}",
            # First contact pins the host key; a changed key is refused.
            "    StrictHostKeyChecking accept-new",
            "    GlobalKnownHostsFile /dev/null",
            "    LogLevel ERROR",
            "",
        ]
    )


def ensure_config() -> Path:
    """Write the config if it changed and point the wrapper at it."""
    path = config_path()
    content = render_config()
    if not path.exists() or path.read_text(encoding="utf-8") != content:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.replace(tmp, path)
    os.environ["KVMMGR_SSH_CONFIG"] = str(path)
    return path
