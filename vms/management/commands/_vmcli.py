"""Shared parts of the VM lifecycle commands: the VM argument and error translation."""

from __future__ import annotations

from argparse import ArgumentParser
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from jobs.cli import add_job_arguments, finish
from jobs.errors import JobConflict
from jobs.models import Job
from kvmmgr.access import Actor
from kvmmgr.cli import acting
from vms.models import VirtualMachine
from vms.services.lifecycle import find_vm


def add_vm_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("vm", help="VM name or libvirt UUID")
    parser.add_argument("--node", help="node name, when several nodes have a VM of that name")
    add_job_arguments(parser)


def submit_for_vm(
    opts: dict[str, Any], request: Callable[[VirtualMachine, Actor], Job], stdout: Any
) -> None:
    """Find the VM, submit through ``request(vm, user)`` and report like every job command."""
    try:
        vm = find_vm(opts["vm"], node=opts.get("node"))
        with acting() as actor:
            job = request(vm, actor)
    except ValidationError as exc:
        raise CommandError(" ".join(exc.messages)) from exc
    except JobConflict as exc:
        raise CommandError(str(exc)) from exc
    finish(job, opts, stdout)
