"""Nodes: the registry (admins change it), inventory refresh, host-key confirmation."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from kvmmgr.api.auth import actor
from kvmmgr.api.common import accepted
from kvmmgr.api.serializers import (
    AcceptedSerializer,
    EvacuateSerializer,
    MaintenanceSerializer,
    MoveSerializer,
    NodeDetailSerializer,
    NodeInputSerializer,
    NodeSerializer,
)
from nodes.models import Node
from nodes.services import registry
from vms.services.evacuation import request_evacuation


class NodeViewSet(viewsets.ModelViewSet):
    """Every user reads nodes; adding, changing and removing them needs an admin."""

    queryset = Node.objects.order_by("name")
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Node]:
        nodes = Node.objects.order_by("name")
        name = self.request.query_params.get("name")
        return nodes.filter(name=name) if name else nodes

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        if self.action == "retrieve":
            return NodeDetailSerializer
        if self.action in ("create", "partial_update"):
            return NodeInputSerializer
        return NodeSerializer

    @extend_schema(request=NodeInputSerializer, responses={201: NodeDetailSerializer})
    def create(self, request: Request) -> Response:
        data = NodeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        node = registry.add_node(actor=actor(request), **data.validated_data["data"])
        return Response(NodeDetailSerializer(node).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=NodeInputSerializer, responses={200: NodeDetailSerializer})
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        node = self.get_object()
        data = NodeInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        node = registry.update_node(node, actor(request), **data.validated_data["data"])
        return Response(NodeDetailSerializer(node).data)

    def destroy(self, request: Request, pk: str | None = None) -> Response:
        registry.remove_node(self.get_object(), actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=None,
        responses={202: inline_serializer("Queued", {"queued": serializers.IntegerField()})},
    )
    @action(detail=True, methods=["post"])
    def refresh(self, request: Request, pk: str | None = None) -> Response:
        """Queue a refresh of the node's inventory and status (operators and admins)."""
        count = registry.request_refresh([self.get_object()], actor=actor(request))
        return Response({"queued": count}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=MaintenanceSerializer, responses={200: NodeDetailSerializer})
    @action(detail=True, methods=["post"])
    def maintenance(self, request: Request, pk: str | None = None) -> Response:
        """Start (``on: true``) or end maintenance: a node in it takes no new VMs."""
        data = MaintenanceSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        node = registry.set_maintenance(
            self.get_object(), actor(request), **data.validated_data["data"]
        )
        return Response(NodeDetailSerializer(node).data)

    @extend_schema(
        request=EvacuateSerializer,
        responses={200: inline_serializer("EvacuationPlan", {"plan": MoveSerializer(many=True)}),
                   202: AcceptedSerializer},
    )  # fmt: skip
    @action(detail=True, methods=["post"])
    def evacuate(self, request: Request, pk: str | None = None) -> Response:
        """Plan (``dry_run``) or start moving every VM off the node (``returning``: back)."""
        data = EvacuateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        node = self.get_object()
        plan, job = request_evacuation(node, actor(request), **data.validated_data["data"])
        if job is None:
            return Response({"plan": plan.as_dicts()})
        return accepted(job)

    @extend_schema(
        request=inline_serializer("TrustInput", {"fingerprint": serializers.CharField()}),
        responses={200: NodeDetailSerializer},
    )
    @action(detail=True, methods=["post"])
    def trust(self, request: Request, pk: str | None = None) -> Response:
        """Confirm the node's pinned host key (``SHA256:…``), as ``manage.py trustnode``."""
        node = registry.confirm_trust(
            self.get_object(), actor(request), str(request.data.get("fingerprint", ""))
        )
        return Response(NodeDetailSerializer(node).data)
