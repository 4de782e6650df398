"""Roles and permissions: the one check every service calls before it changes anything.

Views and commands build an ``Actor`` (who, with which role, from where) and pass
it to the service; the service calls ``require`` first, so the web UI and the CLI
obey the same rules. A refusal raises ``AccessDenied`` (Django's
``PermissionDenied``: a 403 page in the web UI, a ``CommandError`` in the CLI)
and is written to the audit log.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied

from kvmmgr.auditlog import record
from kvmmgr.models import Role, UserRole

if TYPE_CHECKING:
    from django.http import HttpRequest


class Permission(StrEnum):
    """One kind of change; ``GRANTS`` says which roles hold it."""

    VM_POWER = "vm.power"  # start, shut down, reboot, force off
    VM_CONSOLE = "vm.console"
    VM_MIGRATE = "vm.migrate"
    JOB_ABORT = "job.abort"
    NODE_REFRESH = "node.refresh"
    VM_CREATE = "vm.create"
    VM_DELETE = "vm.delete"
    NODE_MANAGE = "node.manage"
    VPN_MANAGE = "vpn.manage"
    USER_MANAGE = "user.manage"
    AUDIT_VIEW = "audit.view"


_OPERATOR = frozenset(
    {
        Permission.VM_POWER,
        Permission.VM_CONSOLE,
        Permission.VM_MIGRATE,
        Permission.JOB_ABORT,
        Permission.NODE_REFRESH,
    }
)
GRANTS: dict[str, frozenset[Permission]] = {
    Role.VIEWER: frozenset(),
    Role.OPERATOR: _OPERATOR,
    Role.ADMIN: frozenset(Permission),
}

_DESCRIPTIONS = {
    Permission.VM_POWER: "start, stop or reboot VMs",
    Permission.VM_CONSOLE: "open VM consoles",
    Permission.VM_MIGRATE: "migrate VMs",
    Permission.JOB_ABORT: "abort jobs",
    Permission.NODE_REFRESH: "refresh the inventory",
    Permission.VM_CREATE: "create VMs",
    Permission.VM_DELETE: "delete VMs",
    Permission.NODE_MANAGE: "add, change or remove nodes",
    Permission.VPN_MANAGE: "change the VPN",
    Permission.USER_MANAGE: "manage users",
    Permission.AUDIT_VIEW: "read the audit log",
}


def lowest_role(permission: Permission) -> str:
    return next(role for role in (Role.OPERATOR, Role.ADMIN) if permission in GRANTS[role])


@dataclass(frozen=True)
class Actor:
    """Who asks for an action: a name for the job and audit rows, a role, and where from."""

    name: str
    role: str
    source: str = ""

    def __post_init__(self) -> None:
        if self.role not in GRANTS:
            raise ValueError(f"unknown role {self.role!r}")

    def can(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]

    @classmethod
    def for_user(cls, user: Any, *, source: str = "") -> Actor:
        """The actor of a Django user: its role row decides.

        Only an account without a role row (a superuser made by Django's own
        ``createsuperuser``) falls back to admin for a superuser, viewer otherwise:
        a demotion with ``adduser NAME --role viewer`` must take effect.
        """
        if user is None or not user.is_authenticated or not user.is_active:
            return cls(name="anonymous", role=Role.VIEWER, source=source)
        try:
            role: str = user.kvmmgr_role.role
        except UserRole.DoesNotExist:
            role = Role.ADMIN if user.is_superuser else Role.VIEWER
        return cls(name=user.get_username(), role=role, source=source)

    @classmethod
    def from_request(cls, request: HttpRequest) -> Actor:
        # REMOTE_ADDR is nginx's $remote_addr (a uwsgi param), never a client header.
        return cls.for_user(request.user, source=request.META.get("REMOTE_ADDR", ""))

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        """Work the manager does by itself (reaper, beat), or a test's admin."""
        return cls(name=name, role=Role.ADMIN, source="system")


def cli_actor() -> Actor:
    """Who runs ``manage.py``.

    With ``KVMMGR_ACTOR=NAME`` the command acts as that kvmmgr user, with its
    role. Otherwise it is ``cli:<unix account>`` with the admin role: whoever can
    run manage.py can read the database and the secret key, so a lesser role
    would be theatre.
    """
    source = "cli"
    name = os.environ.get("KVMMGR_ACTOR", "").strip()
    if name:
        user = get_user_model().objects.filter(username=name).first()
        if user is None:
            raise AccessDenied(f"KVMMGR_ACTOR={name!r} is not a kvmmgr user (see manage.py users)")
        return Actor.for_user(user, source=source)
    try:
        unix = getpass.getuser()
    except OSError:
        unix = str(os.getuid())
    return Actor(name=f"cli:{unix}", role=Role.ADMIN, source=source)


class AccessDenied(PermissionDenied):
    """The actor's role does not allow the action. Nothing was changed."""


def require(actor: Actor, permission: Permission, *, action: str = "", target: str = "") -> None:
    """Raise ``AccessDenied`` (and audit the attempt) unless ``actor`` holds ``permission``."""
    if not isinstance(actor, Actor):
        raise TypeError(f"services need an Actor, got {type(actor).__name__}")
    if actor.can(permission):
        return
    what = f" ({target})" if target else ""
    message = (
        f"{actor.name} has the {actor.role} role and may not "
        f"{_DESCRIPTIONS[permission]}{what}: that needs the {lowest_role(permission)} role. "
        "Nothing was changed."
    )
    record(
        actor,
        action or str(permission),
        target=target,
        result="denied",
        detail=message,
    )
    raise AccessDenied(message)


class Capabilities:
    """What templates ask: ``{% if access.vm_power %}``; unknown names are False."""

    def __init__(self, actor: Actor) -> None:
        self.actor = actor

    def __getattr__(self, name: str) -> bool:
        try:
            permission = Permission(name.replace("_", "."))
        except ValueError:
            return False
        return self.actor.can(permission)


def context(request: HttpRequest) -> dict[str, Any]:
    """Template context processor: ``actor`` and ``access`` (capabilities)."""
    actor = Actor.from_request(request)
    return {"actor": actor, "access": Capabilities(actor), "auth_mode": _auth_mode()}


def _auth_mode() -> str:
    return settings.KVMMGR_AUTH
