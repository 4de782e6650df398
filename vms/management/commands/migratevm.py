from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from kvmmgr.access import Actor
from nodes.models import Node
from vms.choices import MediaRemedy
from vms.management.commands._vmcli import add_vm_arguments, submit_for_vm
from vms.models import Job, VirtualMachine
from vms.services.convergence import TimeoutPolicy
from vms.services.migration import parse_options, request_migration
from vms.services.migration_features import COMPRESSION_CHOICES


class Command(BaseCommand):
    help = (
        "Live-migrate a running VM with its local disks to another node "
        "(virsh migrate --live --p2p --copy-storage-all --persistent --undefinesource)."
    )
    # Django's system checks (~0.2 s of every start, the biggest share of the CLI's own
    # cost over raw virsh) are for deploys and CI (`manage.py check`); an admin's
    # migration re-checks nothing they cover, like `manage.py shell`.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_vm_arguments(parser)
        parser.add_argument("destination", help="destination node name")
        parser.add_argument("--bandwidth", type=str, default="", help="MiB/s limit (0: none)")
        parser.add_argument(
            "--max-downtime", type=str, default="", help="ms the guest may pause at the end"
        )
        parser.add_argument("--auto-converge", action="store_true")
        parser.add_argument(
            "--compress",
            choices=COMPRESSION_CHOICES,
            default="",
            help="compression of the memory copy: auto (default: zstd over a slow link when "
            "both nodes have it), none, zstd or zlib (multifd, over parallel connections; "
            "libvirt 9.4+ on both nodes), xbzrle",
        )
        parser.add_argument(
            "--compressed", action="store_true", help="the same as --compress xbzrle"
        )
        parser.add_argument("--postcopy", action="store_true", help="allow post-copy")
        parser.add_argument("--parallel", type=str, default="", help="parallel connections")
        parser.add_argument("--timeout", type=str, default="", help="completion timeout, s")
        parser.add_argument(
            "--stall-timeout",
            type=str,
            default="",
            help="give up when no data moved for this many seconds (default 30)",
        )
        parser.add_argument(
            "--timeout-policy", choices=[p.value for p in TimeoutPolicy], default="abort"
        )
        parser.add_argument("--keep-source-disks", action="store_true")
        parser.add_argument(
            "--media",
            choices=[r.value for r in MediaRemedy if r.value],
            default="",
            help="CD-ROM/floppy images or read-only disks the destination lacks: 'eject' "
            "takes them out for the move, 'copy' copies them to the destination's pool first "
            "(default: the pre-check fails and names them)",
        )
        parser.add_argument(
            "--sync-writes",
            action="store_true",
            help="write the guest's disk writes to the destination synchronously during the "
            "copy (converges for busy disks)",
        )
        parser.add_argument(
            "--check", action="store_true", help="run the pre-checks only (dry run)"
        )

    def handle(self, *args: object, **opts: Any) -> None:
        dest = Node.objects.filter(name=opts["destination"]).first()
        if dest is None:
            raise CommandError(f"no node named {opts['destination']!r}")
        try:
            options = parse_options(
                {
                    "bandwidth_mib_s": opts["bandwidth"],
                    "max_downtime_ms": opts["max_downtime"],
                    "auto_converge": opts["auto_converge"],
                    "compression": opts["compress"],
                    "compressed": opts["compressed"],
                    "postcopy": opts["postcopy"],
                    "parallel_connections": opts["parallel"],
                    "completion_timeout_s": opts["timeout"],
                    "stall_timeout_s": opts["stall_timeout"],
                    "timeout_policy": opts["timeout_policy"],
                    "keep_source_disks": opts["keep_source_disks"],
                    "sync_writes": opts["sync_writes"],
                    "check_only": opts["check"],
                    "media": opts["media"],
                }
            )
        except ValidationError as exc:
            lines = [m for ms in exc.message_dict.values() for m in ms]
            raise CommandError("; ".join(lines)) from exc

        def request(vm: VirtualMachine, user: Actor) -> Job:
            return request_migration(vm, dest, options, user)

        submit_for_vm(opts, request, self.stdout)
