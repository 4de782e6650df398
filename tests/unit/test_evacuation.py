"""Evacuation planning and requests, from the database alone."""

from __future__ import annotations

import io
import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from jobs.choices import JobStatus
from jobs.models import Job
from kvmmgr.access import Actor
from kvmmgr.models import AuditEntry
from nodes.hypervisor.states import VMState
from nodes.models import Node
from nodes.services import registry
from tests.support.factories import make_node, make_vm
from vms.choices import JobKind
from vms.services import evacuation
from vms.services.evacuation import Plan, request_evacuation

pytestmark = pytest.mark.django_db
GIB = 2**30
ADMIN = Actor.system("admin")


def _node(name: str, address: str, free_mib: int, pool_free: int = 50 * GIB) -> Node:
    node = make_node(name=name, uri=f"qemu+ssh://root@{address}/system", virt_type="qemu")
    facts = {
        "memory_free_mib": free_mib,
        "pools": [{"name": "default", "active": True, "path": "/var/lib/libvirt/images",
                   "available_bytes": pool_free}],
        "volumes": {"default": []},
    }  # fmt: skip
    Node.objects.filter(pk=node.pk).update(
        last_seen=timezone.now(), last_error="", facts=facts, trusted_host_key="x"
    )
    node.refresh_from_db()
    return node


@pytest.fixture(autouse=True)
def confirmed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Host keys come from the manager's known_hosts; here every node counts as confirmed.
    monkeypatch.setattr(evacuation.trust, "unconfirmed", lambda *nodes: [])


def _vm(node: Node, name: str, memory: int, state: str = VMState.RUNNING, disk_gib: int = 1):
    path = f"/var/lib/libvirt/images/{name}.qcow2"
    vm = make_vm(
        node, name=name, state=state, memory_mib=memory, persistent=True,
        xml_summary={"disks": [{"target": "vda", "device": "disk", "path": path}]},
    )  # fmt: skip
    facts = node.facts
    facts["volumes"]["default"].append({"path": path, "capacity_bytes": disk_gib * GIB})
    Node.objects.filter(pk=node.pk).update(facts=facts)
    node.refresh_from_db()
    return vm


def test_smallest_first_spread_by_free_memory_and_what_fits_nowhere_stays(
    settings: object,
) -> None:
    settings.KVMMGR_EVACUATE_MEMORY_RESERVE_MIB = 256  # type: ignore[attr-defined]
    source = _node("src", "198.51.100.11", 8000)
    big, small = _node("big", "198.51.100.12", 4352), _node("small", "198.51.100.13", 2304)
    for name, memory in (("a", 1024), ("b", 2048), ("c", 512), ("d", 1536), ("huge", 8192)):
        _vm(source, name, memory)
    _vm(source, "off", 512, state=VMState.SHUTOFF)
    plan = evacuation.plan(source, evacuation._evacuees(source, False), [big, small])
    moves = {m.name: m for m in plan.moves}
    assert [m.name for m in plan.moves] == ["c", "a", "d", "b", "huge"]  # smallest first
    # Spare memory (free - 256 MiB reserve - planned): big 4096, small 2048.
    assert moves["c"].dest == "big"  # 4096 vs 2048
    assert moves["a"].dest == "big"  # 3584 vs 2048
    assert moves["d"].dest == "big"  # 2560 vs 2048
    assert moves["b"].dest == "small"  # big has 1024 left: only small (2048) fits
    assert moves["huge"].state == "stays" and moves["huge"].dest == ""
    assert "needs 8192" in moves["huge"].reason
    assert "off" not in moves  # stopped VMs only with include_stopped


def test_storage_name_clash_maintenance_and_offline_are_reasons() -> None:
    source = _node("src", "198.51.100.11", 8000)
    full = _node("full", "198.51.100.12", 8000, pool_free=GIB // 2)
    _vm(source, "web", 512, disk_gib=1)
    plan = evacuation.plan(source, evacuation._evacuees(source, False), [full])
    assert (
        plan.moves[0].state == "stays"
        and "pool for /var/lib/libvirt/images" in plan.moves[0].reason
    )
    other = _node("other", "198.51.100.13", 8000)
    make_vm(other, name="web", state=VMState.RUNNING)
    registry.set_maintenance(full, ADMIN, True)
    plan = evacuation.plan(source, evacuation._evacuees(source, False), [full, other])
    reason = plan.moves[0].reason
    assert "full is in maintenance" in reason and "other already has a VM named web" in reason


def test_dry_run_changes_nothing_and_a_request_queues_one_evacuation() -> None:
    source = _node("src", "198.51.100.11", 8000)
    _node("dst", "198.51.100.12", 8000)
    _vm(source, "web", 512)
    plan, job = request_evacuation(source, ADMIN, dry_run=True)
    assert job is None and plan.moves[0].dest == "dst"
    source.refresh_from_db()
    assert not source.in_maintenance and not Job.objects.exists()
    plan, job = request_evacuation(source, ADMIN, parallel=2, options={"bandwidth_mib_s": "50"})
    assert job is not None and job.kind == JobKind.EVACUATE and job.status == JobStatus.QUEUED
    job.refresh_from_db()
    assert Plan.from_dicts(job.progress_detail["moves"]).moves[0].dest == "dst"
    with pytest.raises(Exception, match="already has an active job"):
        request_evacuation(source, ADMIN)
    assert AuditEntry.objects.filter(action="node.evacuate", result="ok").count() == 2


def test_bad_requests_are_refused_before_anything_starts() -> None:
    source = _node("src", "198.51.100.11", 8000)
    with pytest.raises(ValidationError, match="1 to 8"):
        request_evacuation(source, ADMIN, parallel=0)
    with pytest.raises(ValidationError, match="No enabled qemu"):
        request_evacuation(source, ADMIN, to=["nowhere"])
    with pytest.raises(ValidationError):
        request_evacuation(source, ADMIN, options={"max_downtime_ms": "1"})
    with pytest.raises(ValidationError, match="no finished evacuation"):
        request_evacuation(source, ADMIN, returning=True)
    assert not Job.objects.exists()


def test_the_command_prints_the_plan_and_json() -> None:
    source = _node("src", "198.51.100.11", 8000)
    _node("dst", "198.51.100.12", 8000)
    _vm(source, "web", 512)
    out = io.StringIO()
    call_command("evacuate", "src", "--dry-run", stdout=out)
    assert "web (512 MiB) -> dst [live]" in out.getvalue()
    out = io.StringIO()
    call_command("evacuate", "src", "--dry-run", "--json", stdout=out)
    assert json.loads(out.getvalue())["plan"][0]["dest"] == "dst"
    with pytest.raises(CommandError, match="no node named"):
        call_command("evacuate", "nope")


def test_the_node_page_shows_the_plan_and_starts_only_on_post(
    admin_client: object, operator_client: object
) -> None:
    source = _node("src", "198.51.100.11", 8000)
    _node("dst", "198.51.100.12", 8000)
    _vm(source, "web", 512)
    url = f"/nodes/{source.pk}/evacuate/"
    page = admin_client.get(url)  # type: ignore[attr-defined]
    assert page.status_code == 200 and "web" in page.content.decode()
    assert "dst" in page.content.decode() and not Job.objects.exists()
    assert operator_client.get(url).status_code == 403  # type: ignore[attr-defined]
    response = admin_client.post(url, {"parallel": "1"})  # type: ignore[attr-defined]
    job = Job.objects.get(kind=JobKind.EVACUATE)
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    detail = admin_client.get(response["Location"]).content.decode()  # type: ignore[attr-defined]
    assert 'id="evacuation-moves"' in detail and "web" in detail


def test_a_destination_behind_a_tunnel_that_is_down_is_not_chosen() -> None:
    from vpn.choices import MemberRole, VpnState
    from vpn.models import Tunnel, TunnelMember

    source = _node("src", "198.51.100.11", 8000)
    dest = _node("dst", "198.51.100.12", 8000)
    Node.objects.filter(pk=dest.pk).update(migration_address="100.64.0.2")
    dest.refresh_from_db()
    tunnel = Tunnel.objects.create(name="t1", subnet="100.64.0.0/24")
    TunnelMember.objects.create(
        tunnel=tunnel, node=source, role=MemberRole.SERVER, address="100.64.0.1",
        state=VpnState.UP,
    )  # fmt: skip
    member = TunnelMember.objects.create(
        tunnel=tunnel, node=dest, role=MemberRole.CLIENT, address="100.64.0.2",
        state=VpnState.DOWN,
    )  # fmt: skip
    _vm(source, "web", 512)
    plan = evacuation.plan(source, evacuation._evacuees(source, False), [dest])
    assert (
        plan.moves[0].state == "stays"
        and "tunnel t1 was last seen down on dst" in plan.moves[0].reason
    )
    TunnelMember.objects.filter(pk=member.pk).update(state=VpnState.UP)
    plan = evacuation.plan(source, evacuation._evacuees(source, False), [dest])
    assert plan.moves[0].dest == "dst"
