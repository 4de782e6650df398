from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from jobs.cli import add_job_arguments, finish
from kvmmgr.cli import acting
from nodes.models import Node
from vms.flavors import FLAVORS
from vms.services.create import DISK_FORMATS, CreateRequest, submit_create


class Command(BaseCommand):
    help = (
        "Create a VM with virt-install on a node (a job). Install media: --iso, "
        "--import-volume or --pxe. Sizes may come from --flavor "
        f"({', '.join(FLAVORS)}); explicit values win."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("node", help="node name")
        parser.add_argument("name", help="VM name (letters, digits, '.', '_', '-')")
        # Strings on purpose: the service explains a bad number in the same words as the UI.
        parser.add_argument("--vcpus")
        parser.add_argument("--memory", metavar="MIB")
        parser.add_argument("--disk-size", metavar="GIB")
        parser.add_argument("--disk-format", default="qcow2", choices=DISK_FORMATS)
        parser.add_argument("--pool", default="", help="pool of the new disk (default: default)")
        media = parser.add_mutually_exclusive_group(required=True)
        media.add_argument("--iso", metavar="[POOL/]VOL", help="ISO volume in one of the pools")
        media.add_argument("--import-volume", metavar="[POOL/]VOL", help="boot an existing disk")
        media.add_argument("--pxe", action="store_true", help="network (PXE) boot")
        net = parser.add_mutually_exclusive_group()
        net.add_argument("--network", default="", help="libvirt network on the node")
        net.add_argument("--bridge", default="", help="host bridge on the node")
        parser.add_argument("--os-variant", default="", help="from `virt-install --osinfo list`")
        parser.add_argument("--flavor", default="", choices=["", *FLAVORS])
        parser.add_argument("--vnc-port", default=None, help="5900–65535 (default: automatic)")
        add_job_arguments(parser)

    def handle(self, *args: object, **opts: Any) -> None:
        node = Node.objects.filter(name=opts["node"]).first()
        if node is None:
            raise CommandError(f"no node named {opts['node']!r} (see `manage.py nodes`)")
        media = "iso" if opts["iso"] else "import" if opts["import_volume"] else "pxe"
        request = CreateRequest(
            node=node,
            name=opts["name"],
            vcpus=opts["vcpus"],
            memory_mib=opts["memory"],
            disk_gib=opts["disk_size"],
            disk_format=opts["disk_format"],
            pool=opts["pool"],
            media=media,
            iso=opts["iso"] or "",
            import_volume=opts["import_volume"] or "",
            network=opts["network"],
            bridge=opts["bridge"],
            os_variant=opts["os_variant"],
            vnc_port=opts["vnc_port"],
            flavor=opts["flavor"],
        )
        try:
            with acting() as actor:
                job = submit_create(request, actor=actor)
        except ValidationError as exc:
            lines = [
                f"{field}: {message}" if field != "__all__" else message
                for field, messages in exc.message_dict.items()
                for message in messages
            ]
            raise CommandError("refused, nothing changed:\n  " + "\n  ".join(lines)) from exc
        finish(job, opts, self.stdout)
