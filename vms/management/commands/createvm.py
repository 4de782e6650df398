from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from jobs.cli import add_job_arguments, finish
from kvmmgr.cli import acting
from kvmmgr.inputs.cli import add_form_arguments, form_data, refusal
from nodes.hypervisor.virtinstall import MEDIA_PXE
from nodes.models import Node
from vms.flavors import FLAVORS
from vms.forms.create import CreateVMForm
from vms.services.create import submit_create


class Command(BaseCommand):
    help = (
        "Create a VM with virt-install on a node (a job). Install media: --iso, "
        "--import-volume or --pxe. Sizes may come from --flavor "
        f"({', '.join(FLAVORS)}); explicit values win. The options are the create "
        "page's, one flag per field."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("node", help="node name")
        parser.add_argument("name", help="VM name (letters, digits, '.', '_', '-')")
        add_form_arguments(parser, CreateVMForm, exclude=["name"])
        parser.add_argument("--pxe", action="store_true", help="the same as --media pxe")
        add_job_arguments(parser)

    def handle(self, *args: object, **opts: Any) -> None:
        node = Node.objects.filter(name=opts["node"]).first()
        if node is None:
            raise CommandError(f"no node named {opts['node']!r} (see `manage.py nodes`)")
        data = {"name": opts["name"], **form_data(opts)}
        if opts["pxe"]:
            data.setdefault("media", MEDIA_PXE)
        try:
            with acting() as actor:
                job = submit_create(CreateVMForm(node, data), actor=actor)
        except ValidationError as exc:
            raise refusal(exc, per_line=True) from exc
        finish(job, opts, self.stdout)
