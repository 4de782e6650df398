from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from jobs.cli import add_job_arguments, finish
from jobs.errors import JobConflict
from kvmmgr.cli import acting
from kvmmgr.inputs.cli import add_form_arguments, form_data, refusal
from nodes.models import Node
from vms.forms.evacuate import EvacuateForm
from vms.forms.migrate import MigrationOptionsForm
from vms.services.evacuation import Plan, request_evacuation

OPTION = "option_"  # the migration options' argparse dests


class Command(BaseCommand):
    help = (
        "Move every VM off a node (live migration; stopped VMs too with --include-stopped) "
        "and put it in maintenance; with --return, move the VMs its last evacuation moved "
        "back. The plan comes first: which VM to which node and why, what stays and why."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("node")
        add_form_arguments(parser, EvacuateForm, exclude=["options"])
        moves = parser.add_argument_group(
            "migration options for every move",
            "the migratevm flags (their short spellings "
            "are migratevm's only: --parallel here is the evacuation's)",
        )
        add_form_arguments(
            parser, MigrationOptionsForm, group=moves, exclude=["check_only"], prefix=OPTION,
            aliases=False,
        )  # fmt: skip
        moves.add_argument(
            "--option",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="any migration option by its name, e.g. bandwidth_mib_s=100",
        )
        add_job_arguments(parser)

    def handle(self, *args: object, **opts: Any) -> None:
        node = Node.objects.filter(name=opts["node"]).first()
        if node is None:
            raise CommandError(f"no node named {opts['node']!r}")
        options = form_data(opts, OPTION)
        for item in opts["option"]:
            key, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--option {item!r}: KEY=VALUE")
            options[key] = value
        try:
            with acting() as actor:
                plan, job = request_evacuation(node, actor, **form_data(opts), options=options)
        except ValidationError as exc:
            raise refusal(exc) from exc
        except JobConflict as exc:
            raise CommandError(str(exc)) from exc
        if opts["json"] and job is None:
            self.stdout.write(json.dumps({"plan": plan.as_dicts()}, indent=2))
            return
        if not opts["json"]:
            self._print_plan(plan, node)
        if job is not None:
            finish(job, opts, self.stdout)

    def _print_plan(self, plan: Plan, node: Node) -> None:
        if not plan.moves:
            self.stdout.write(f"nothing to move ({node.name})")
        for move in plan.moves:
            if move.dest:
                kind = "live" if move.live else "cold"
                self.stdout.write(
                    f"{move.name} ({move.memory_mib} MiB) -> {move.dest} [{kind}]: {move.reason}"
                )
            else:
                self.stdout.write(f"{move.name} ({move.memory_mib} MiB) STAYS: {move.reason}")
