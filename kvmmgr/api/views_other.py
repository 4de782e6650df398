"""Jobs, VPN tunnels, stats series and the audit log."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.exceptions import ValidationError as ApiValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from jobs import actions as job_actions
from jobs.actions import request_abort
from jobs.models import Job
from kvmmgr import audit
from kvmmgr.access import Permission, require
from kvmmgr.api.auth import actor
from kvmmgr.api.common import accepted
from kvmmgr.api.serializers import (
    AcceptedSerializer,
    AuditSerializer,
    JobDetailSerializer,
    JobSerializer,
    TunnelSerializer,
)
from kvmmgr.models import AuditEntry
from nodes.models import Node
from stats.services import series
from vms.models import VirtualMachine
from vpn import jobs as vpn_jobs
from vpn.models import Tunnel


class JobViewSet(viewsets.ReadOnlyModelViewSet):
    """Jobs, newest first; a job's detail carries its log from ``log_offset`` on."""

    def get_queryset(self) -> QuerySet[Job]:
        jobs = Job.objects.select_related("vm", "node").order_by("-created_at", "-pk")
        params = self.request.query_params
        if params.get("status"):
            jobs = jobs.filter(status=params["status"])
        if params.get("kind"):
            jobs = jobs.filter(kind=params["kind"])
        if params.get("vm"):
            jobs = jobs.filter(vm__uuid=params["vm"])
        return jobs

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        return JobDetailSerializer if self.action == "retrieve" else JobSerializer

    def get_serializer_context(self) -> dict[str, object]:
        context = super().get_serializer_context()
        raw = self.request.query_params.get("log_offset", "0")
        if not raw.isdigit():
            raise ApiValidationError({"log_offset": ["A number of characters, 0 or more."]})
        context["log_offset"] = int(raw)
        return context

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, description="queued, running, succeeded, ..."),
            OpenApiParameter("kind", str, description="create, start, migrate, ..."),
            OpenApiParameter("vm", str, description="the VM's UUID"),
        ]
    )
    def list(self, request: Request) -> Response:
        return super().list(request)

    @extend_schema(
        parameters=[OpenApiParameter("log_offset", int, description="log from this character")]
    )
    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return super().retrieve(request, pk=pk)

    @extend_schema(request=None, responses={202: AcceptedSerializer})
    @action(detail=True, methods=["post"])
    def abort(self, request: Request, pk: str | None = None) -> Response:
        job = self.get_object()
        if not request_abort(job, actor(request)):
            job.refresh_from_db()
            return Response(
                {"error": f"Job {job.pk} is {job.status}: nothing to abort."},
                status=status.HTTP_409_CONFLICT,
            )
        job.refresh_from_db()
        return accepted(job)

    @extend_schema(request=None, responses={202: AcceptedSerializer})
    @action(detail=True, methods=["post"])
    def postcopy(self, request: Request, pk: str | None = None) -> Response:
        job = self.get_object()
        # Offered by the kinds that declare it in the jobs registry (live migrations).
        job_actions.perform(job, "postcopy", actor(request))
        return accepted(job)


class TunnelViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Tunnel.objects.prefetch_related("members__node").order_by("name")
    serializer_class = TunnelSerializer


@extend_schema(request=None, responses={202: AcceptedSerializer})
@api_view(["POST"])
def vpn_action(request: Request, node: str, verb: str) -> Response:
    """``up``, ``start``, ``stop`` or ``restart`` OpenVPN on a tunnel member (admins)."""
    return accepted(vpn_jobs.request_action(node, verb, actor(request)))


def _range(request: Request) -> str:
    key = request.query_params.get("range", series.DEFAULT_RANGE)
    if key not in series.RANGES:
        raise ApiValidationError({"range": [f"One of {', '.join(series.RANGES)}."]})
    return key


RANGE = OpenApiParameter("range", str, description="chart range, e.g. 1h")


@extend_schema(parameters=[RANGE], responses={200: dict})
@api_view(["GET"])
def vm_stats(request: Request, uuid: str) -> Response:
    vm = get_object_or_404(VirtualMachine, uuid=uuid)
    return Response(series.vm_series(vm.pk, _range(request)))


@extend_schema(parameters=[RANGE], responses={200: dict})
@api_view(["GET"])
def node_stats(request: Request, pk: int) -> Response:
    node = get_object_or_404(Node, pk=pk)
    return Response(series.node_series(node.pk, _range(request)))


class AuditViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit log (admins), newest first; filters as the Audit page's."""

    serializer_class = AuditSerializer
    queryset = AuditEntry.objects.none()  # for the schema; get_queryset decides

    def get_queryset(self) -> QuerySet[AuditEntry]:
        require(actor(self.request), Permission.AUDIT_VIEW, action="audit.view")
        filters = {key: self.request.query_params.get(key, "").strip() for key in audit.FILTERS}
        return audit.filtered(filters)

    @extend_schema(parameters=[OpenApiParameter(k, str) for k in audit.FILTERS])
    def list(self, request: Request) -> Response:
        return super().list(request)
