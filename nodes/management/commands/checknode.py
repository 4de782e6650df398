from __future__ import annotations

import json
from argparse import ArgumentParser
from dataclasses import asdict

from django.core.management.base import BaseCommand, CommandError

from nodes.features import FEATURES
from nodes.hypervisor import HypervisorError, probe_host
from nodes.models import Node

GIB = 1024**3


class Command(BaseCommand):
    help = "Connect to a node now and report versions, KVM support, memory and storage pools."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: object, **opts: object) -> None:
        node = Node.objects.filter(name=opts["name"]).first()
        if node is None:
            raise CommandError(f"no node named {opts['name']!r}")
        try:
            report = probe_host(node.uri)
        except HypervisorError as exc:
            raise CommandError(f"{node.name} is unreachable or refused: {exc.message}") from exc
        if opts["json"]:
            self.stdout.write(
                json.dumps({**asdict(report), "virt_type": report.virt_type}, indent=2)
            )
            return
        out = self.stdout.write
        out(f"node:        {node.name} ({node.uri})")
        out(f"hostname:    {report.hostname}")
        out(f"libvirt:     {report.libvirt_version}")
        out(f"hypervisor:  {report.hypervisor_version}")
        out(f"QEMU:        {report.qemu_version or '(not a QEMU host)'}")
        out(f"CPUs:        {report.cpus}")
        out(f"memory:      {report.memory_free_mib} MiB free of {report.memory_total_mib} MiB")
        verdict = "KVM usable" if report.kvm_usable else "no KVM: guests run under TCG (qemu)"
        out(f"virt type:   {verdict} — {report.kvm_detail}")
        out("migration features (used only when the other node has them too):")
        for feature in FEATURES:
            offered = "yes" if feature.key in report.migration_features else "no "
            out(f"  {offered} {feature.label:<26} {feature.why}")
        out("storage pools:")
        if not report.pools:
            out("  (none defined)")
        for pool in report.pools:
            state = "active" if pool.active else "inactive"
            out(
                f"  {pool.name:<16} {state:<8} {pool.available_bytes / GIB:8.1f} GiB free "
                f"of {pool.capacity_bytes / GIB:8.1f} GiB  {pool.path}"
            )
