"""Sealing VNC console passwords for storage on the VM row.

The password is needed again to open a console, so it is stored, but encrypted
with a key derived from ``SECRET_KEY`` so a database dump alone does not reveal
it. Rotating ``SECRET_KEY`` makes stored passwords unreadable (the console then
needs a new password set on the domain).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import string

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

#: VNC's DES challenge uses at most 8 characters; more would be silently cut.
VNC_PASSWORD_LENGTH = 8
_ALPHABET = string.ascii_letters + string.digits


def generate_password() -> str:
    """A random VNC password: letters and digits only (safe in virt-install's option syntax)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(VNC_PASSWORD_LENGTH))


def _fernet() -> Fernet:
    digest = hashlib.sha256(b"kvmmgr-vnc-password:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(password: str) -> str:
    return _fernet().encrypt(password.encode()).decode()


def unseal(token: str) -> str:
    """The stored password, or "" when there is none or it cannot be decrypted."""
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        return ""
