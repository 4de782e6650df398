"""``manage.py vpn``: create tunnels, add nodes, bring tunnels up/down, show status.

``up``, ``start``, ``stop`` and ``restart`` submit a job (``vpn.jobs``) and, unless
``--no-wait``, follow it like ``manage.py job N --follow``: its log lines, then
its final status, exiting non-zero unless it succeeded.
"""

from __future__ import annotations

from argparse import ArgumentParser, BooleanOptionalAction
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from jobs.cli import finish
from jobs.errors import JobConflict
from kvmmgr import audit
from kvmmgr.access import Permission
from kvmmgr.cli import acting
from kvmmgr.inputs.cli import add_form_arguments, form_data
from nodes.hypervisor.errors import HypervisorError
from vpn import jobs, services
from vpn.forms import MemberForm, TunnelForm
from vpn.models import TunnelMember


class Command(BaseCommand):
    help = "Manage OpenVPN tunnels between nodes: create, add, up, start, stop, restart, status."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a tunnel with its server node")
        create.add_argument("name")
        add_form_arguments(create, TunnelForm, exclude=["name"])
        add = sub.add_parser("add", help="add a client node to a tunnel")
        add.add_argument("tunnel")
        add.add_argument("node")
        add_form_arguments(add, MemberForm, exclude=["tunnel", "node"])
        for action in jobs.ACTIONS:
            job = sub.add_parser(action, help=f"{action} the node's OpenVPN, as a job")
            job.add_argument("node")
            job.add_argument(
                "--wait",
                action=BooleanOptionalAction,
                default=True,
                help="follow the job until it ends (default); --no-wait only queues it",
            )
            job.add_argument("--json", action="store_true", help="print the job as JSON")
        for action in ("renew", "revoke"):
            sub.add_parser(action).add_argument("node")
        status = sub.add_parser("status", help="read every (or one) node's tunnel status")
        status.add_argument("node", nargs="?")

    def handle(self, *args: Any, **opts: Any) -> None:
        action = opts["action"]
        if action in jobs.ACTIONS:
            self._submit(action, opts)
            return
        if action != "status":
            # Changing a tunnel is an admin's action, recorded like every other.
            target = opts.get("node") or opts.get("name") or opts.get("tunnel") or ""
            with (
                acting() as actor,
                audit.action(actor, Permission.VPN_MANAGE, f"vpn.{action}", target=str(target)),
            ):
                self._change(action, opts)
            return
        self._change(action, opts)

    def _submit(self, action: str, opts: dict[str, Any]) -> None:
        try:
            with acting() as actor:
                job = jobs.request_action(opts["node"], action, actor)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        except JobConflict as exc:
            raise CommandError(str(exc)) from exc
        finish(job, opts, self.stdout)

    def _change(self, action: str, opts: dict[str, Any]) -> None:
        try:
            if action == "create":
                data = {"name": opts["name"], **form_data(opts)}
                tunnel = services.create_tunnel(**TunnelForm(data).values())
                self.stdout.write(f"tunnel {tunnel.name} created ({tunnel.subnet}, {tunnel.mode})")
            elif action == "add":
                data = {"tunnel": opts["tunnel"], "node": opts["node"], **form_data(opts)}
                values = MemberForm(data).values()
                member = services.add_client(
                    values["tunnel"], values["node"], control_uri=values["control_uri"]
                )
                self.stdout.write(f"{member.node.name} added, tunnel address {member.address}")
            elif action == "renew":
                member = services.renew_certificate(opts["node"])
                self.stdout.write(f"{member.node.name}: new certificate {member.cert_serial}; "
                                  "run `vpn up` to install it")  # fmt: skip
            elif action == "revoke":
                self.stdout.write(f"revoked {services.revoke_certificate(opts['node'])}")
            else:
                self._status(opts.get("node"))
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        except (services.VpnError, HypervisorError) as exc:
            raise CommandError(exc.message) from exc

    def _status(self, node: str | None) -> None:
        members = [services.get_member(node)] if node else list(TunnelMember.objects.all())
        for stale in members:
            member = services.refresh_status(stale)
            self.stdout.write(
                f"{member.tunnel.name:<10} {member.node.name:<16} {member.role:<6} "
                f"{member.address:<15} {member.state:<10} {member.state_reason}"
            )
            for peer in member.peers:
                self.stdout.write(
                    f"    peer {peer['name']} tunnel {peer['tunnel_address']} "
                    f"real {peer['real_address']}"
                )
