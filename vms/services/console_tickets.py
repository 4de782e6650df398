"""One-time console tickets: issued to a logged-in user for one VM, redeemed once by
the console proxy (``vms/consoleproxy.py``).

A ticket is random (256 bits), stored only as a SHA-256, valid for
``KVMMGR_CONSOLE_TICKET_SECONDS`` (30 s), and opens one connection for the user
*and* the login session it was issued to, from a page of this site (the Origin
header). Redeeming re-reads the VM from the inventory, so the connection goes to
the node the VM runs on now.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from kvmmgr import audit
from kvmmgr.access import Actor, Permission
from nodes.validators import parse_node_uri
from vms import vncsecret
from vms.models import ConsoleTicket, VirtualMachine

LOOPBACK_OR_ANY = {"", "0.0.0.0", "::", "127.0.0.1", "::1", "localhost"}


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedTicket:
    token: str
    password: str  # the VM's VNC password ("" when it has none), for the browser's client
    expires_at: datetime


class TicketRefused(Exception):
    """The proxy refuses the connection; ``message`` says why (for the log and audit)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ConsoleTarget:
    """Where the proxy connects: ``host``:``port`` as seen *from the node*."""

    ticket_id: int
    user: AbstractBaseUser
    vm_name: str
    node_name: str
    node_uri: str
    host: str
    port: int

    @property
    def through_ssh(self) -> bool:
        return parse_node_uri(self.node_uri, resolve=False).is_remote


def issue(
    vm: VirtualMachine, actor: Actor, user: AbstractBaseUser, session_key: str
) -> IssuedTicket:
    """A ticket for ``vm``'s console; raises ``ValidationError`` when it has none."""
    with audit.action(actor, Permission.VM_CONSOLE, "vm.console.ticket", target=vm.name):
        if not vm.has_console:
            raise ValidationError(f"{vm.name} has no VNC console right now (is it running?).")
        if parse_node_uri(vm.node.uri, resolve=False).scheme == "test":
            raise ValidationError(
                f"{vm.name} runs on libvirt's test driver ({vm.node.name}), which has no VNC "
                "server to connect to."
            )
        if not session_key:
            raise ValidationError("A console needs a login session; log in again.")
        token = secrets.token_urlsafe(32)
        expires_at = timezone.now() + timedelta(seconds=settings.KVMMGR_CONSOLE_TICKET_SECONDS)
        ConsoleTicket.objects.create(
            token_hash=digest(token),
            vm=vm,
            user=user,
            session_hash=digest(session_key),
            issued_to=actor.source[:64],
            expires_at=expires_at,
        )
        password = vncsecret.unseal(vm.vnc_password_sealed)
        return IssuedTicket(token=token, password=password, expires_at=expires_at)


def origin_allowed(origin: str | None, host: str | None) -> bool:
    """A page of this site: the Origin is the Host the browser connected to (behind
    nginx: same origin), or one listed in ``KVMMGR_CONSOLE_ORIGINS`` (deploy/dev.sh:
    the dev server's origin, the proxy listening on another port)."""
    if not origin:
        return False
    if origin in settings.KVMMGR_CONSOLE_ORIGINS:
        return True
    return bool(host) and urlsplit(origin).netloc == host


def redeem(
    token: str,
    *,
    session_key: str,
    remote_user: str | None,
    origin: str | None,
    host: str | None,
) -> ConsoleTarget:
    """Use up the ticket behind ``token`` and return where to connect.

    The ticket is spent by the first attempt, also one that is then refused.
    """
    if not token:
        raise TicketRefused("no console ticket in the request")
    now = timezone.now()
    with transaction.atomic():
        fresh = ConsoleTicket.objects.filter(
            token_hash=digest(token), used_at__isnull=True, expires_at__gt=now
        ).update(used_at=now)
        ticket = (
            ConsoleTicket.objects.select_related("vm__node", "user")
            .filter(token_hash=digest(token))
            .first()
        )
    if ticket is None:
        raise TicketRefused("unknown console ticket")
    if not fresh:
        if ticket.used_at is None:
            raise TicketRefused("console ticket expired")
        raise TicketRefused("console ticket already used")
    if not origin_allowed(origin, host):
        raise TicketRefused(f"connection from another site (Origin {origin or 'missing'})")
    if digest(session_key or "") != ticket.session_hash:
        raise TicketRefused("console ticket of another login session")
    user = ticket.user
    if remote_user is not None and remote_user != user.get_username():
        raise TicketRefused(f"console ticket of another user than {remote_user}")
    if not Actor.for_user(user).can(Permission.VM_CONSOLE):
        raise TicketRefused(f"{user.get_username()} may no longer open consoles")
    vm = VirtualMachine.objects.select_related("node").get(pk=ticket.vm_id)
    if not vm.has_console:
        raise TicketRefused(f"{vm.name} has no VNC console right now (not running)")
    listen = vm.vnc_listen
    return ConsoleTarget(
        ticket_id=ticket.pk,
        user=user,
        vm_name=vm.name,
        node_name=vm.node.name,
        node_uri=vm.node.uri,
        host="127.0.0.1" if listen in LOOPBACK_OR_ANY else listen,
        port=int(vm.vnc_port or 0),
    )
