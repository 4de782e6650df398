"""The ssh client configuration the manager uses for every qemu+ssh connection.

libvirt's ssh transport has no connect timeout, takes no ssh options per URI and
starts ssh with a scrubbed environment. So the manager keeps its own ssh_config
file and a two-line wrapper next to it that runs ``ssh -F <that file>``; the
adapter hands libvirt the wrapper with the URI parameter ``command=``.
"""

from __future__ import annotations

import math
import os
import shlex
import shutil
from pathlib import Path

from django.conf import settings


def ssh_dir() -> Path:
    return Path(settings.DATA_DIR) / "ssh"


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


def render_wrapper(config: Path) -> str:
    ssh = shutil.which("ssh") or "/usr/bin/ssh"
    return (
        "#!/bin/sh\n"
        "# Written by kvmmgr: libvirt runs this as its ssh for qemu+ssh URIs.\n"
        f'exec {shlex.quote(ssh)} -F {shlex.quote(str(config))} "$@"\n'
    )


def _write_if_changed(path: Path, content: str, mode: int) -> None:
    if path.exists() and path.read_text(encoding="utf-8") == content:
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def ensure_wrapper() -> Path:
    """Write the config and the wrapper if they changed; return the wrapper's path."""
    directory = ssh_dir()
    config = directory / "config"
    wrapper = directory / "kvmmgr-ssh"
    _write_if_changed(config, render_config(), 0o600)
    _write_if_changed(wrapper, render_wrapper(config), 0o700)
    return wrapper
