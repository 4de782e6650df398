"""API tokens: created and revoked by admins for anyone (``manage.py apitoken``) and by
users for themselves (their Tokens page). The key is shown once; only its SHA-256 is
stored. A request with ``Authorization: Token KEY`` acts as the token's user."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from kvmmgr import audit
from kvmmgr.access import Actor, Permission
from kvmmgr.models import ApiToken

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
KEY_PREFIX = "kvm_"
# last_used_at is written at most this often per token (not on every request).
LAST_USED_RESOLUTION = timedelta(minutes=1)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    key: str  # shown once


def _permission(actor: Actor, user: AbstractBaseUser) -> Permission | None:
    """Anyone may manage their own tokens; other users' tokens need the user permission."""
    return None if actor.name == user.get_username() else Permission.USER_MANAGE


def find_user(name: str) -> AbstractBaseUser:
    user = get_user_model().objects.filter(username=name).first()
    if user is None:
        raise ValidationError(f"No user named {name!r} (manage.py users lists them).")
    return user


def create(
    actor: Actor, user: AbstractBaseUser, name: str, *, expires_in_days: int | None = None
) -> NewToken:
    params = {"user": user.get_username(), "name": name, "expires_in_days": expires_in_days}
    with audit.action(
        actor,
        _permission(actor, user),
        "apitoken.create",
        target=user.get_username(),
        params=params,
    ):
        if not NAME_RE.fullmatch(name or ""):
            raise ValidationError(
                "A token name is 1-64 letters, digits, '.', '_' or '-', starting with a "
                "letter or digit."
            )
        if expires_in_days is not None and not 1 <= expires_in_days <= 3650:
            raise ValidationError("Expiry is 1 to 3650 days (or none).")
        if ApiToken.objects.filter(user=user, name=name, revoked_at__isnull=True).exists():
            raise ValidationError(
                f"{user.get_username()} already has a token named {name!r}; revoke it first "
                f"or choose another name."
            )
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
        token = ApiToken.objects.create(
            user=user, name=name, prefix=key[:8], key_hash=digest(key), expires_at=expires_at
        )
        return NewToken(token=token, key=key)


def revoke(actor: Actor, token: ApiToken) -> ApiToken:
    target = f"{token.user.get_username()}/{token.name}"
    with audit.action(actor, _permission(actor, token.user), "apitoken.revoke", target=target):
        if token.revoked_at is None:
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at"])
        return token


def authenticate(key: str) -> ApiToken | None:
    """The live token with this key (its user active), marking it used; else None."""
    now = timezone.now()
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=digest(key), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    if token.expires_at is not None and token.expires_at <= now:
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        with transaction.atomic():
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def is_expired(token: ApiToken, now: datetime | None = None) -> bool:
    return token.expires_at is not None and token.expires_at <= (now or timezone.now())
