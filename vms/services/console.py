"""Console access: the VNC address and password, for those allowed to open consoles.

The password is stored sealed with the VM (``vms/vncsecret.py``) and shown only on
request, to an actor with the console permission, and every reveal is audited.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError

from kvmmgr import audit
from kvmmgr.access import Actor, Permission
from vms import vncsecret
from vms.models import VirtualMachine


@dataclass(frozen=True)
class ConsoleAccess:
    url: str
    host: str
    port: int
    password: str


def open_console(vm: VirtualMachine, actor: Actor) -> ConsoleAccess:
    """The console of a running VM; raises ``ValidationError`` when it has none."""
    with audit.action(actor, Permission.VM_CONSOLE, "vm.console", target=vm.name) as done:
        url = vm.vnc_url
        if not url:
            raise ValidationError(f"{vm.name} has no VNC console right now (is it running?).")
        host, _, port = url.removeprefix("vnc://").rpartition(":")
        done.detail = url
        return ConsoleAccess(
            url=url,
            host=host.strip("[]"),
            port=int(port),
            password=vncsecret.unseal(getattr(vm, "vnc_password_sealed", "")),
        )
