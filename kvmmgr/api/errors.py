"""Errors as JSON an admin can act on: ``{"error": "...", "fields": {...}}``."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from jobs.errors import JobConflict
from nodes.hypervisor import HypervisorError


def handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ValidationError):
        if hasattr(exc, "error_dict"):
            fields = {k: [str(m) for m in v] for k, v in exc.message_dict.items()}
            general = fields.pop("__all__", [])
            message = " ".join(general) or "Some fields are not valid; nothing was changed."
            return Response({"error": message, "fields": fields}, status.HTTP_400_BAD_REQUEST)
        return Response({"error": " ".join(exc.messages)}, status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, PermissionDenied) and not hasattr(exc, "detail"):
        return Response({"error": str(exc) or "Not allowed."}, status.HTTP_403_FORBIDDEN)
    if isinstance(exc, JobConflict):
        body: dict[str, Any] = {"error": str(exc)}
        if exc.active is not None:
            body["active_job"] = f"/api/v1/jobs/{exc.active.pk}/"
        return Response(body, status.HTTP_409_CONFLICT)
    if isinstance(exc, HypervisorError):
        return Response({"error": exc.message}, status.HTTP_502_BAD_GATEWAY)
    response = exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"error": str(response.data["detail"])}
    elif response is not None and isinstance(response.data, dict):
        response.data = {
            "error": "Some fields are not valid; nothing was changed.",
            "fields": response.data,
        }
    return response
