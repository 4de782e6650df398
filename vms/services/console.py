"""Console access for native VNC clients: where to connect and the password.

The password is stored sealed with the VM (``vms/vncsecret.py``) and shown only on
request, to an actor with the console permission, and every reveal is audited.
Browser consoles go through the console proxy instead (``console_tickets``).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError

from kvmmgr import audit
from kvmmgr.access import Actor, Permission
from nodes.validators import parse_node_uri
from vms import vncsecret
from vms.models import VirtualMachine
from vms.services.console_tickets import LOOPBACK_OR_ANY


@dataclass(frozen=True)
class ConsoleAccess:
    url: str  # vnc:// for a display a client can reach directly, else ""
    host: str  # the display's address as seen from its node
    port: int
    password: str
    ssh_tunnel: str  # an ssh -L command to reach it from elsewhere, "" for a local node


def _ssh_tunnel(vm: VirtualMachine, host: str, port: int) -> str:
    parsed = parse_node_uri(vm.node.uri, resolve=False)
    if not parsed.is_remote:
        return ""
    ssh_port = f"-p {parsed.port} " if parsed.port and parsed.port != 22 else ""
    target = f"[{host}]" if ":" in host else host
    return f"ssh {ssh_port}-N -L {port}:{target}:{port} {parsed.user or 'root'}@{parsed.host}"


def open_console(vm: VirtualMachine, actor: Actor) -> ConsoleAccess:
    """The console of a running VM; raises ``ValidationError`` when it has none."""
    with audit.action(actor, Permission.VM_CONSOLE, "vm.console", target=vm.name) as done:
        if not vm.has_console:
            raise ValidationError(f"{vm.name} has no VNC console right now (is it running?).")
        port = int(vm.vnc_port or 0)
        host = "127.0.0.1" if vm.vnc_listen in LOOPBACK_OR_ANY else vm.vnc_listen
        done.detail = f"native client: {vm.node.name} {host}:{port}"
        return ConsoleAccess(
            url=vm.vnc_url,
            host=host,
            port=port,
            password=vncsecret.unseal(getattr(vm, "vnc_password_sealed", "")),
            ssh_tunnel=_ssh_tunnel(vm, host, port),
        )
