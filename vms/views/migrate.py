"""The migrate page: choose a destination and options, then queue the job."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from jobs.errors import JobConflict
from kvmmgr.access import Actor, Permission, require
from nodes.models import Node
from vms.choices import MediaRemedy
from vms.models import VirtualMachine
from vms.services.migration.convergence import TimeoutPolicy
from vms.services.migration.features import COMPRESSION_CHOICES, feature_labels, shared_labels
from vms.services.migration.options import MigrationOptions, parse_options
from vms.services.migration.request import request_migration

OPTION_FIELDS = (
    "bandwidth_mib_s",
    "max_downtime_ms",
    "auto_converge",
    "compression",
    "postcopy",
    "parallel_connections",
    "completion_timeout_s",
    "stall_timeout_s",
    "timeout_policy",
    "keep_source_disks",
    "sync_writes",
    "check_only",
    "media",
)
CHECKBOXES = {"auto_converge", "postcopy", "keep_source_disks", "sync_writes", "check_only"}


@require_http_methods(["GET", "POST"])
def vm_migrate(request: HttpRequest, uuid: str) -> HttpResponse:
    vm = get_object_or_404(VirtualMachine.objects.select_related("node"), uuid=uuid)
    require(Actor.from_request(request), Permission.VM_MIGRATE, action="vm.migrate", target=vm.name)
    destinations = [
        (node, shared_labels(vm.node, node))
        for node in Node.objects.exclude(pk=vm.node_id).order_by("name")
    ]
    errors: dict[str, list[str]] = {}
    values: dict[str, object] = {key: getattr(MigrationOptions, key) for key in OPTION_FIELDS}
    if request.method == "POST":
        data = {
            key: ("on" if key in request.POST else "")
            if key in CHECKBOXES
            else request.POST.get(key, "")
            for key in OPTION_FIELDS
        }
        values.update(data)
        chosen = request.POST.get("destination", "")
        dest = Node.objects.filter(pk=int(chosen)).first() if chosen.isdigit() else None
        try:
            options = parse_options(data)
            job = request_migration(vm, dest, options, Actor.from_request(request))
        except ValidationError as exc:
            errors = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
        except JobConflict as exc:
            errors = {"__all__": [str(exc)]}
        else:
            messages.success(request, f"Migration of {vm.name} to {dest.name} queued.")
            return redirect("jobs:job_detail", pk=job.pk)
    return render(
        request,
        "vms/vm_migrate.html",
        {
            "vm": vm,
            "destinations": destinations,
            "errors": errors,
            "general_errors": errors.get("__all__", []),
            "values": values,
            "policies": [p.value for p in TimeoutPolicy],
            "media_remedies": MediaRemedy.choices,
            "media": [
                d
                for d in vm.xml_summary.get("disks", [])
                if d.get("path") and (d.get("device") != "disk" or d.get("readonly"))
            ],
            "compressions": COMPRESSION_CHOICES,
            "source_features": feature_labels(vm.node),
            "selected": request.POST.get("destination", ""),
        },
    )
