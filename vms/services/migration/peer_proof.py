"""Reusing a recent proof that a node reaches another's peer path (a fixed cost of every job).

Before a live migration the source opens the destination's libvirt over the peer
path and knocks on its migration port: one ssh session, about a second. A live
migration between the same two nodes over the same peer path that succeeded a few
minutes ago proves the same thing, so the next job (an evacuation moves many VMs
one after another; an admin moves one back) skips the session and says so. If the
path broke since, libvirt's own failure comes within seconds, and the job then runs
the full check to name the path and the setting to change.
"""

from __future__ import annotations

from concurrent.futures import Future
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from jobs.choices import JobStatus
from jobs.models import Job
from nodes.models import Node
from nodes.services import trust
from vms.choices import JobKind


def recent(source: Node, dest: Node) -> Job | None:
    """The latest live migration source → dest over today's peer path, if recent enough."""
    seconds = settings.KVMMGR_PEER_PROOF_SECONDS
    if seconds <= 0:
        return None
    since = timezone.now() - timedelta(seconds=seconds)
    return (
        Job.objects.filter(
            kind=JobKind.MIGRATE,
            status=JobStatus.SUCCEEDED,
            node=source,
            finished_at__gte=since,
            params__destination_id=dest.pk,
            params__peer_proof__path=dest.peer_path,
        )
        .order_by("-finished_at")
        .first()
    )


def as_check(proof: Job) -> Future[tuple[trust.Preflight, list[str]]]:
    """The proof in the shape of a finished peer-path check."""
    future: Future[tuple[trust.Preflight, list[str]]] = Future()
    hostname = str(proof.params["peer_proof"].get("hostname") or "?")
    future.set_result((trust.Preflight(hostname, "", True), []))
    return future


def describe(proof: Job, dest: Node) -> str:
    at = timezone.localtime(proof.finished_at).strftime("%H:%M:%S") if proof.finished_at else "?"
    return (
        f"peer path {dest.peer_path}: proven by job {proof.pk} at {at} (same nodes, same "
        f"path, within {settings.KVMMGR_PEER_PROOF_SECONDS:g} s); not asked again"
    )


def record(job: Job, dest: Node, hostname: str) -> None:
    """Remember, on a succeeded live migration, which peer path it proved."""
    job.params["peer_proof"] = {"path": dest.peer_path, "hostname": hostname}
    Job.objects.filter(pk=job.pk).update(params=job.params)
