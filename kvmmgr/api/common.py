"""Pieces every API view uses."""

from __future__ import annotations

from rest_framework import status
from rest_framework.response import Response

from jobs.models import Job


def accepted(job: Job) -> Response:
    """202 with the job that does the work (poll it for progress and the log)."""
    url = f"/api/v1/jobs/{job.pk}/"
    return Response(
        {"job": url, "status": job.status},
        status=status.HTTP_202_ACCEPTED,
        headers={"Location": url},
    )
