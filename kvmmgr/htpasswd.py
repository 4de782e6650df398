"""The htpasswd file nginx's basic auth reads: validated names, bcrypt hashes, atomic writes."""

from __future__ import annotations

import fcntl
import grp
import os
import re
import tempfile
from pathlib import Path

import bcrypt
from django.core.exceptions import ValidationError

# What nginx, htpasswd and Django's username rules all accept, bounded.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
# bcrypt reads at most 72 bytes of a password (the bcrypt module refuses more).
MAX_PASSWORD_BYTES = 72


def validate_username(name: str) -> str:
    """Return ``name`` or raise a ``ValidationError`` that says what is wrong with it."""
    if not name:
        raise ValidationError("The user name is empty.", code="invalid_username")
    if ":" in name:
        raise ValidationError(
            f"{name!r}: a user name cannot contain ':' (it separates name and hash in htpasswd).",
            code="invalid_username",
        )
    if "\n" in name or "\r" in name:
        raise ValidationError(
            f"{name!r}: a user name cannot contain a line break (one htpasswd line per user).",
            code="invalid_username",
        )
    if not NAME_RE.fullmatch(name):
        raise ValidationError(
            f"{name!r}: use 1-64 letters, digits and ._@+- , starting with a letter or digit.",
            code="invalid_username",
        )
    return name


def hash_password(password: str) -> str:
    # $2y$ is what `htpasswd -B` writes; libxcrypt (nginx's crypt) reads it.
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
    return "$2y$" + hashed[4:]


def check_password(path: Path, name: str, password: str) -> bool:
    stored = read(path).get(name)
    if not stored or not stored.startswith("$2"):
        return False
    return bcrypt.checkpw(password.encode(), ("$2b$" + stored[4:]).encode())


def read(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    entries = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, hashed = line.partition(":")
        if sep and name:
            entries[name] = hashed
    return entries


def _lock(path: Path) -> int:
    fd = os.open(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _write(path: Path, entries: dict[str, str], group: str) -> None:
    """Replace the file atomically: nginx never reads half a file."""
    fd, tmp = tempfile.mkstemp(prefix=".htpasswd.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.writelines(f"{name}:{hashed}\n" for name, hashed in sorted(entries.items()))
        os.chmod(tmp, 0o640)
        gid = _gid(group)
        if gid is not None and os.geteuid() == 0:
            os.chown(tmp, 0, gid)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _gid(group: str) -> int | None:
    if not group:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None


def set_entry(path: Path, name: str, password: str, *, group: str = "") -> None:
    validate_username(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock(path)
    try:
        entries = read(path)
        entries[name] = hash_password(password)
        _write(path, entries, group)
    finally:
        os.close(lock)


def remove_entry(path: Path, name: str, *, group: str = "") -> bool:
    validate_username(name)
    if not path.exists():
        return False
    lock = _lock(path)
    try:
        entries = read(path)
        if entries.pop(name, None) is None:
            return False
        _write(path, entries, group)
        return True
    finally:
        os.close(lock)
