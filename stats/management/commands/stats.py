from __future__ import annotations

import re
from argparse import ArgumentParser
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from stats.services.series import vm_table
from vms.services.lifecycle import find_vm

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if not match:
        raise CommandError(f"--since: {text!r} is not a duration like 90s, 10m, 6h or 7d")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def _num(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "—" if value is None else f"{value / scale:.{digits}f}"


class Command(BaseCommand):
    help = "Print a VM's recent resource figures (CPU %, memory, disk and network rates)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("vm", help="VM name or libvirt UUID")
        parser.add_argument("--node", help="node name, when several nodes have a VM of that name")
        parser.add_argument(
            "--since", default="5m", help="how far back: 90s, 10m, 6h, 7d (default 5m)"
        )

    def handle(self, *args: object, **opts: object) -> None:
        since = parse_duration(str(opts["since"]))
        try:
            vm = find_vm(str(opts["vm"]), node=opts.get("node"))  # type: ignore[arg-type]
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        resolution, rows = vm_table(vm.pk, timezone.now() - since)
        kind = "raw samples" if resolution is None else f"averages per {resolution} s"
        self.stdout.write(f"{vm.name} ({vm.uuid}), {len(rows)} {kind}")
        if not rows:
            return
        self.stdout.write(
            f"{'time (UTC)':19}  {'node':12} {'CPU%':>6} {'MiB':>8} {'mem%':>6} "
            f"{'rd KiB/s':>9} {'wr KiB/s':>9} {'rd IOPS':>8} {'wr IOPS':>8} "
            f"{'rx KiB/s':>9} {'tx KiB/s':>9}"
        )
        for at, node, cpu, mem, mem_pct, rd, wr, rd_ops, wr_ops, rx, tx in rows:
            self.stdout.write(
                f"{at:%Y-%m-%d %H:%M:%S}  {node or '':12.12} {_num(cpu):>6} "
                f"{_num(mem, digits=0):>8} {_num(mem_pct):>6} "
                f"{_num(rd, 1024):>9} {_num(wr, 1024):>9} "
                f"{_num(rd_ops):>8} {_num(wr_ops):>8} {_num(rx, 1024):>9} {_num(tx, 1024):>9}"
            )
