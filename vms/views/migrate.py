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
from vms.forms.migrate import MigrationOptionsForm
from vms.models import VirtualMachine
from vms.services.migration.features import feature_labels, shared_labels
from vms.services.migration.request import request_migration


def _media_note(vm: VirtualMachine) -> str:
    """The media help, naming this VM's images when it has any."""
    media = [
        d
        for d in vm.xml_summary.get("disks", [])
        if d.get("path") and (d.get("device") != "disk" or d.get("readonly"))
    ]
    if not media:
        return str(MigrationOptionsForm.base_fields["media"].help_text)
    listed = ", ".join(f"{d.get('target')} ({d.get('device')} {d.get('path')})" for d in media)
    return (
        f"This VM has {listed}: the pre-checks look for each on the destination (same path "
        "and size). 'eject' takes them out for the move, 'copy' copies them to the "
        "destination's pool first. A copy is removed again if the migration fails."
    )


@require_http_methods(["GET", "POST"])
def vm_migrate(request: HttpRequest, uuid: str) -> HttpResponse:
    vm = get_object_or_404(VirtualMachine.objects.select_related("node"), uuid=uuid)
    require(Actor.from_request(request), Permission.VM_MIGRATE, action="vm.migrate", target=vm.name)
    destinations = [
        (node, shared_labels(vm.node, node))
        for node in Node.objects.exclude(pk=vm.node_id).order_by("name")
    ]
    errors: dict[str, list[str]] = {}
    form = MigrationOptionsForm(request.POST if request.method == "POST" else None)
    form.fields["media"].help_text = _media_note(vm)
    if request.method == "POST":
        chosen = request.POST.get("destination", "")
        dest = Node.objects.filter(pk=int(chosen)).first() if chosen.isdigit() else None
        try:
            job = request_migration(vm, dest, form.options(), Actor.from_request(request))
        except ValidationError as exc:
            errors = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
            for field, found in errors.items():
                if field in form.fields and not form.has_error(field):
                    for message in found:
                        form.add_error(field, message)
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
            "form": form,
            "errors": errors,
            "general_errors": [
                *errors.get("__all__", []),
                *(
                    m
                    for field, ms in errors.items()
                    if field not in form.fields and field not in ("__all__", "destination")
                    for m in ms
                ),
            ],
            "source_features": feature_labels(vm.node),
            "selected": request.POST.get("destination", ""),
        },
    )
