"""VMs: the inventory, and every action as a job (202 with the job's URL)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from kvmmgr.api.auth import actor
from kvmmgr.api.common import accepted
from kvmmgr.api.serializers import (
    AcceptedSerializer,
    CreateVMSerializer,
    DeleteSerializer,
    MigrateSerializer,
    ShutdownSerializer,
    VMDetailSerializer,
    VMSerializer,
)
from nodes.models import Node
from vms.forms.create import CreateVMForm
from vms.models import VirtualMachine
from vms.services import console_tickets, lifecycle
from vms.services.create import submit_create
from vms.services.migration.request import request_migration


def _node(name: str, field: str) -> Node:
    node = Node.objects.filter(name=name).first()
    if node is None:
        raise ValidationError({field: [f"No node named {name!r}."]})
    return node


class VMViewSet(viewsets.ReadOnlyModelViewSet):
    """Every user reads VMs; the actions need the roles the pages need."""

    lookup_field = "uuid"

    def get_queryset(self) -> QuerySet[VirtualMachine]:
        vms = VirtualMachine.objects.present().select_related("node").order_by("name", "pk")
        params = self.request.query_params
        if params.get("node"):
            vms = vms.filter(node__name=params["node"])
        if params.get("state"):
            vms = vms.filter(state=params["state"])
        if params.get("name"):
            vms = vms.filter(name__icontains=params["name"])
        return vms

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        return VMDetailSerializer if self.action == "retrieve" else VMSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("node", str, description="only this node's VMs"),
            OpenApiParameter("state", str, description="e.g. running, shutoff"),
            OpenApiParameter("name", str, description="name contains"),
        ]
    )
    def list(self, request: Request) -> Response:
        return super().list(request)

    @extend_schema(request=CreateVMSerializer, responses={202: AcceptedSerializer})
    def create(self, request: Request) -> Response:
        data = CreateVMSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        node = _node(data.validated_data["node"], "node")
        form = CreateVMForm(node, data.validated_data["data"])
        job = submit_create(form, actor=actor(request))
        return accepted(job)

    @extend_schema(request=None, responses={202: AcceptedSerializer})
    @action(detail=True, methods=["post"])
    def start(self, request: Request, uuid: str | None = None) -> Response:
        return accepted(lifecycle.request_start(self.get_object(), actor(request)))

    @extend_schema(request=ShutdownSerializer, responses={202: AcceptedSerializer})
    @action(detail=True, methods=["post"])
    def shutdown(self, request: Request, uuid: str | None = None) -> Response:
        data = ShutdownSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        extra = (
            {"timeout": data.validated_data["timeout"]} if "timeout" in data.validated_data else {}
        )
        return accepted(lifecycle.request_shutdown(self.get_object(), actor(request), **extra))

    @extend_schema(request=None, responses={202: AcceptedSerializer})
    @action(detail=True, methods=["post"], url_path="force-off")
    def force_off(self, request: Request, uuid: str | None = None) -> Response:
        return accepted(lifecycle.request_force_off(self.get_object(), actor(request)))

    @extend_schema(request=None, responses={202: AcceptedSerializer})
    @action(detail=True, methods=["post"])
    def reboot(self, request: Request, uuid: str | None = None) -> Response:
        return accepted(lifecycle.request_reboot(self.get_object(), actor(request)))

    @extend_schema(request=DeleteSerializer, responses={202: AcceptedSerializer})
    def destroy(self, request: Request, uuid: str | None = None) -> Response:
        data = DeleteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = lifecycle.request_delete(
            self.get_object(),
            actor(request),
            disks=data.validated_data.get("disks", []),
            force_off=data.validated_data.get("force_off", False),
        )
        return accepted(job)

    @extend_schema(request=MigrateSerializer, responses={202: AcceptedSerializer})
    @action(detail=True, methods=["post"])
    def migrate(self, request: Request, uuid: str | None = None) -> Response:
        data = MigrateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        dest = _node(data.validated_data["destination"], "destination")
        options = data.validated_data["form"].options()
        job = request_migration(self.get_object(), dest, options, actor(request))
        return accepted(job)

    @extend_schema(
        request=None,
        responses={
            201: inline_serializer(
                "ConsoleTicket",
                {
                    "token": serializers.CharField(),
                    "password": serializers.CharField(),
                    "expires_at": serializers.DateTimeField(),
                    "websocket": serializers.CharField(),
                },
            )
        },
    )
    @action(detail=True, methods=["post"])
    def console(self, request: Request, uuid: str | None = None) -> Response:
        """A one-time console ticket for this login session (the browsable API's)."""
        ticket = console_tickets.issue(
            self.get_object(), actor(request), request.user, request.session.session_key or ""
        )
        return Response(
            {
                "token": ticket.token,
                "password": ticket.password,
                "expires_at": ticket.expires_at,
                "websocket": f"/websockify?token={ticket.token}",
            },
            status=status.HTTP_201_CREATED,
        )
