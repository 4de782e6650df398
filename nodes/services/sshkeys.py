"""The manager's own SSH key, used for every qemu+ssh connection."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings


def _write_private(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def ensure_manager_key(comment: str = "kvmmgr") -> Path:
    """Create the ed25519 key pair on first use (private part mode 0600)."""
    key_path = Path(settings.KVMMGR_SSH_KEY)
    if key_path.exists():
        if key_path.stat().st_mode & 0o077:
            raise PermissionError(
                f"{key_path} is readable by other users; run: chmod 600 {key_path}"
            )
        return key_path
    key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    _write_private(key_path, private, 0o600)
    pub_path = key_path.with_name(key_path.name + ".pub")
    pub_path.write_bytes(public + f" {comment}\n".encode())
    return key_path


def public_key() -> str:
    key_path = ensure_manager_key()
    pub_path = key_path.with_name(key_path.name + ".pub")
    if pub_path.exists():
        return pub_path.read_text(encoding="utf-8").strip()
    key = serialization.load_ssh_private_key(key_path.read_bytes(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
