"""Chart pages and their JSON: read from the stats tables only, never from libvirt."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from nodes.hypervisor.states import VMState
from nodes.models import Node
from stats.services import series
from vms.models import VirtualMachine


def _range_key(request: HttpRequest) -> str | None:
    key = request.GET.get("range", series.DEFAULT_RANGE)
    return key if key in series.RANGES else None


def _bad_range() -> JsonResponse:
    return JsonResponse({"error": f"range must be one of {', '.join(series.RANGES)}"}, status=400)


@require_GET
def vm_series(request: HttpRequest, uuid: object) -> JsonResponse:
    vm = get_object_or_404(VirtualMachine.objects.only("pk"), uuid=uuid)
    key = _range_key(request)
    if key is None:
        return _bad_range()
    return JsonResponse(series.vm_series(vm.pk, key))


@require_GET
def node_series(request: HttpRequest, pk: int) -> JsonResponse:
    node = get_object_or_404(Node.objects.only("pk"), pk=pk)
    key = _range_key(request)
    if key is None:
        return _bad_range()
    return JsonResponse(series.node_series(node.pk, key))


@require_GET
def sparklines(request: HttpRequest) -> JsonResponse:
    return JsonResponse(series.sparklines())


@require_GET
def node_stats(request: HttpRequest, pk: int) -> HttpResponse:
    node = get_object_or_404(Node, pk=pk)
    running = VirtualMachine.objects.present().filter(node=node, state=VMState.RUNNING).count()
    context = {"node": node, "running": running, "ranges": series.RANGES.values()}
    return render(request, "stats/node_stats.html", context)
