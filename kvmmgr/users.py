"""Users: a Django account with a role and its htpasswd line, always changed together."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from kvmmgr import audit, htpasswd
from kvmmgr.access import Actor, Permission
from kvmmgr.models import Role, UserRole


def _check_role(role: str) -> str:
    if role not in Role.values:
        raise ValidationError(
            f"unknown role {role!r}: choose one of {', '.join(Role.values)}", code="invalid_role"
        )
    return role


def add_user(actor: Actor, name: str, role: str, password: str) -> tuple[bool, str]:
    """Create or update ``name`` with ``role`` and ``password``; returns (created, role).

    Everything is validated before anything is written; the htpasswd file is
    written last, inside the transaction, so a failure there rolls the account back.
    """
    with audit.action(
        actor, Permission.USER_MANAGE, "user.add", target=name, params={"role": role}
    ) as done:
        htpasswd.validate_username(name)
        _check_role(role)
        users = get_user_model().objects
        user = users.filter(username=name).first()
        validate_password(password, user=user)
        if len(password.encode()) > htpasswd.MAX_PASSWORD_BYTES:
            raise ValidationError(
                f"The password is {len(password.encode())} bytes long; nginx's bcrypt "
                f"hashes use at most {htpasswd.MAX_PASSWORD_BYTES} bytes: choose a shorter one.",
                code="password_too_long",
            )
        with transaction.atomic():
            created = user is None
            if user is None:
                user = users.model(username=name)
            user.is_active = True
            # The role is the one source of truth: Django's own flags follow it.
            user.is_superuser = user.is_staff = role == Role.ADMIN
            user.set_password(password)
            user.save()
            UserRole.objects.update_or_create(user=user, defaults={"role": role})
            htpasswd.set_entry(
                settings.KVMMGR_HTPASSWD, name, password, group=settings.KVMMGR_HTPASSWD_GROUP
            )
        done.detail = "created" if created else "password and role updated"
        return created, role


def remove_user(actor: Actor, name: str) -> None:
    """Deactivate the account (its history keeps its name) and drop its htpasswd line."""
    with audit.action(actor, Permission.USER_MANAGE, "user.remove", target=name):
        htpasswd.validate_username(name)
        user = get_user_model().objects.filter(username=name).first()
        if user is None:
            raise ValidationError(f"no user named {name!r}", code="unknown_user")
        with transaction.atomic():
            user.is_active = False
            user.set_unusable_password()
            user.save()
            htpasswd.remove_entry(
                settings.KVMMGR_HTPASSWD, name, group=settings.KVMMGR_HTPASSWD_GROUP
            )
