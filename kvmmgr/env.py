"""Typed helpers that read settings from the environment and fail loudly.

Every value may also come from a file named by ``NAME_FILE`` (for secrets kept
out of the process environment, e.g. by systemd credentials).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


class ImproperlyConfiguredEnv(RuntimeError):
    """An environment variable holds a value we cannot use."""


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name)
    file_name = os.environ.get(f"{name}_FILE")
    if value is None and file_name:
        try:
            value = Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfiguredEnv(f"{name}_FILE={file_name}: {exc.strerror}") from exc
    if value is None:
        if default is None:
            raise ImproperlyConfiguredEnv(f"{name} must be set")
        return default
    return value


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = env_str(name, str(default))
    try:
        value = int(raw)
    except ValueError as exc:
        raise ImproperlyConfiguredEnv(f"{name}={raw!r} is not an integer") from exc
    if minimum is not None and value < minimum:
        raise ImproperlyConfiguredEnv(f"{name}={value} must be at least {minimum}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = env_str(name, str(default))
    try:
        value = float(raw)
    except ValueError as exc:
        raise ImproperlyConfiguredEnv(f"{name}={raw!r} is not a number") from exc
    if minimum is not None and value < minimum:
        raise ImproperlyConfiguredEnv(f"{name}={value} must be at least {minimum}")
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    raw = env_str(name, "1" if default else "0").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ImproperlyConfiguredEnv(f"{name}={raw!r} is not a boolean (use 1/0, true/false)")


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default).strip()
    if value not in choices:
        raise ImproperlyConfiguredEnv(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = env_str(name, ",".join(default))
    return [item.strip() for item in raw.split(",") if item.strip()]


def private_file(path: Path, *, generate: bool = False) -> str:
    """Read a secret kept in a 0600 file, generating it on first use.

    The file is created with ``O_EXCL`` and mode 0600 so the secret is never
    world-readable, not even for an instant; an existing file with looser
    permissions is refused rather than silently trusted.
    """
    if path.exists():
        mode = path.stat().st_mode & 0o077
        if mode:
            raise ImproperlyConfiguredEnv(
                f"{path} is readable by other users (mode {oct(path.stat().st_mode & 0o777)}); "
                f"run: chmod 600 {path}"
            )
        return path.read_text(encoding="utf-8").strip()
    if not generate:
        raise ImproperlyConfiguredEnv(f"{path} does not exist")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_urlsafe(50)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return value
