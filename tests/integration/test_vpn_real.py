"""Real OpenVPN between a node on the lab bridge and a node behind NAT, through the product.

Topology: tests/lab/nat.py. The tunnel is brought up with ``vpn.services.up``
exactly as ``manage.py vpn up`` does, status is read from OpenVPN's management
interface, and the migration runs through the product's migration job.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.test import Client, override_settings

from jobs import runner
from jobs.actions import request_abort
from jobs.choices import JobStatus
from jobs.context import JobContext
from jobs.models import Job
from nodes.models import Node
from stats.services import sampling
from tests.integration.test_migration_real import (
    _source_job_type,
    _wait_alive_after,
)
from tests.lab import nat
from tests.lab.fixtures import LabGuests
from tests.lab.lab import Lab
from tests.lab.liveness import (
    ALIVE,
    GuestStalled,
    last_number,
    retry_if_guest_stalled,
    serial_numbers,
    wait_serial_progress,
)
from tests.lab.node import LabNode, tcp_open
from tests.lab.trust import confirm_host_key
from tests.support.factories import actor
from vms.forms.migrate import migration_options
from vms.models import VirtualMachine
from vms.services import inventory
from vms.services.migration.live import run_migrate
from vms.services.migration.request import request_migration
from vms.services.reconcile import reconcile_all
from vpn import jobs as vpn_jobs
from vpn import services
from vpn.choices import VpnState
from vpn.models import TunnelMember


@pytest.fixture(scope="session")
def nat_nodes(lab: Lab) -> tuple[LabNode, LabNode]:
    """``vpn1`` on the lab bridge, ``nat2`` behind the masquerading router."""
    return nat.add_public_node(lab, "vpn1"), nat.add_nat_node(lab, "nat2")


@pytest.fixture
def vpn_dir(tmp_path: Path, settings: object) -> Iterator[Path]:
    settings.KVMMGR_VPN_DIR = tmp_path / "vpn"  # type: ignore[attr-defined]
    yield tmp_path / "vpn"


def _node(lab_node: LabNode, **fields: object) -> Node:
    row = Node.objects.create(name=lab_node.name, uri=lab_node.uri, virt_type="qemu", **fields)
    return confirm_host_key(row, lab_node)


def _can_connect(source: LabNode, address: str, port: int = 22) -> bool:
    script = f"exec 3<>/dev/tcp/{address}/{port}"
    return nat.netns_run(source, "timeout", "3", "bash", "-c", script) == 0


def _migrate(vm: VirtualMachine, dest: Node) -> tuple[Job, float]:
    job = request_migration(vm, dest, migration_options({}), actor())
    started = time.monotonic()
    runner.execute(job.pk)
    job.refresh_from_db()
    return job, time.monotonic() - started


def _migrate_leg(
    vm: VirtualMachine,
    dest: Node,
    to: LabNode,
    source: LabNode,
    address: str,
    why: Callable[[], object] = lambda: "",
) -> tuple[Job, float]:
    """Migrate ``vm`` to ``dest`` over the tunnel ``address`` through the product: the job
    succeeds, the guest runs on ``to`` and goes on printing there (else GuestStalled)."""
    vm.refresh_from_db()
    job, took = _migrate(vm, dest)
    assert job.status == JobStatus.SUCCEEDED, (job.log, why())
    assert f"--migrateuri tcp://{address}" in job.command, job.command
    assert to.virsh("domstate", vm.name, check=True).stdout.strip() == "running"
    wait_serial_progress(to, vm.name, last_number(source, vm.name, ALIVE), ALIVE)
    return job, took


def _node_pages_work(admin_client: Client, node: Node, vm_name: str) -> None:
    """The node list, the VM list and the node's charts show the port-forwarded node."""
    nodes_page = admin_client.get("/nodes/").content.decode()
    assert node.uri in nodes_page and node.peer_path in nodes_page, nodes_page
    assert vm_name in admin_client.get("/").content.decode()
    for _ in range(2):  # rates need two samples
        result = sampling.sample_node(node)
        assert result.ok, result.error
        time.sleep(1)
    assert admin_client.get(f"/stats/node/{node.pk}/").status_code == 200
    series = admin_client.get(f"/stats/node/{node.pk}/series.json").json()
    assert len(series["t"]) >= 2 and series["cpu_pct"][-1] is not None, series


@pytest.mark.django_db
def test_tunnel_through_nat_then_live_migration_both_ways(
    manager_ssh: Path,
    vpn_dir: Path,
    lab: Lab,
    nat_nodes: tuple[LabNode, LabNode],
    lab_guests: LabGuests,
    admin_client: Client,
) -> None:
    vpn1, nat2 = nat_nodes
    server, client = _node(vpn1), _node(nat2)
    # Without the tunnel node1 cannot open a connection to the NATed node.
    assert not _can_connect(vpn1, nat2.address)
    assert _can_connect(nat2, vpn1.address)  # outbound through the NAT works

    tunnel = services.create_tunnel(name="t1", subnet="100.64.0.0/24", server=server)
    services.add_client(tunnel, client)
    # As the VPN page's Up button and `manage.py vpn up nat2` do: a job, run by the runner.
    up_job = vpn_jobs.request_action(client, "up", actor())
    assert runner.execute(up_job.pk) == JobStatus.SUCCEEDED
    up_job.refresh_from_db()
    assert up_job.command == "manage.py vpn up nat2", up_job.command
    assert "nat2: connected, tunnel address 100.64.0.2" in up_job.log, up_job.log
    # The buffer warning appears exactly when the kernel would cap OpenVPN's buffers
    # (the lab's namespaces share the machine's net.core limits).
    limits = [int(Path(f"/proc/sys/net/core/{n}").read_text()) for n in ("rmem_max", "wmem_max")]
    capped = min(limits) < 4 * 1024 * 1024
    assert ("net.core.rmem_max is" in up_job.log or "net.core.wmem_max is" in up_job.log) == (
        capped
    ), up_job.log
    # The manager reaches nat2 only through the router's port forward; the lab gives it
    # no route into the inside LAN or the tunnel (the world gives none either).
    assert client.uri == f"qemu+ssh://root@{nat.ROUTER_OUTSIDE}:{nat.forwarded_port(12)}/system"
    assert not tcp_open(nat2.address, 22, 2.0) and not tcp_open("100.64.0.2", 22, 2.0)
    assert _can_connect(vpn1, "100.64.0.2")  # the peer path, through the tunnel
    server.refresh_from_db()
    client.refresh_from_db()
    assert (server.migration_address, client.migration_address) == ("100.64.0.1", "100.64.0.2")
    srv = services.refresh_status(TunnelMember.objects.get(node=server))
    assert srv.state == VpnState.UP, srv.state_reason
    assert [p["name"] for p in srv.peers] == ["nat2"]
    assert srv.peers[0]["real_address"].startswith(nat.ROUTER_OUTSIDE)  # seen through the NAT
    assert srv.peers[0]["tunnel_address"] == "100.64.0.2"
    cli = services.refresh_status(TunnelMember.objects.get(node=client))
    assert cli.state == VpnState.UP and cli.peers[0]["name"] == "vpn1"
    # The VPN page: both members up, each listing the other as its peer.
    page = admin_client.get("/vpn/").content.decode()
    assert page.count("vpn-up") >= 2, page
    assert f"nat2 · 100.64.0.2 · via {srv.peers[0]['real_address']}" in page, page
    assert "vpn1 · 100.64.0.1" in page, page

    # Live migration with copy-storage from the NATed node to vpn1 and back, over the tunnel;
    # the guest must go on printing after each arrival (see tests/lab/liveness.py).
    def round_trip(attempt: int) -> None:
        name = lab_guests.track(f"vmig{attempt}{int(time.time() * 1000) % 10000}", nat2, vpn1)
        try:
            guest, _ = lab.boot_guest(nat2, name, timeout=90, disk_mib=64)
            assert inventory.refresh_node(client).ok and inventory.refresh_node(server).ok
            vm = VirtualMachine.objects.get(uuid=guest.uuid)
            job, there = _migrate_leg(vm, server, vpn1, nat2, "100.64.0.1")
            # QEMU 10 on both lab nodes: no lost-memory warning for this TCG guest; over
            # the tunnel (a slow link) compression "auto" picks XBZRLE.
            assert f"WARNING: {name} runs under TCG" not in job.log, job.log
            assert "migration features used: xbzrle compression" in job.log, job.log
            assert nat2.virsh("domstate", name).returncode != 0
            back, back_s = _migrate_leg(vm, client, nat2, vpn1, "100.64.0.2")
            _node_pages_work(admin_client, client, name)
        except GuestStalled:
            lab.remove_guest(name, nat2, vpn1)
            raise
        print(
            f"VPN-MIGRATION there={there:.1f}s back={back_s:.1f}s "
            f"downtime_ms={job.progress_detail.get('downtime_ms')}/"
            f"{back.progress_detail.get('downtime_ms')} attempt={attempt}"
        )

    retry_if_guest_stalled(round_trip, attempts=3)

    # Tunnel down: the manager still manages nat2 through the port forward, while a
    # migration's pre-check names the tunnel as what is missing, at once.
    services.stop(client)
    result = inventory.refresh_node(client)
    client.refresh_from_db()
    assert result.ok and client.status_label == "online", client.last_error
    name = lab_guests.track(f"vdown{int(time.time() * 1000) % 10000}", nat2, vpn1)
    guest, _ = lab.boot_guest(nat2, name, timeout=90, disk_mib=64)
    assert inventory.refresh_node(client).ok
    vm = VirtualMachine.objects.get(uuid=guest.uuid)
    started = time.monotonic()
    job, _ = _migrate(vm, server)
    assert job.status == JobStatus.FAILED, job.log
    assert "VPN down" in job.error and "t1" in job.error, job.error
    assert time.monotonic() - started < 30, job.log
    assert nat2.virsh("domstate", name, check=True).stdout.strip() == "running"
    services.start(client)
    services.stop(client)
    services.stop(server)


@pytest.mark.django_db
@override_settings(KVMMGR_MIGRATION_ABORT_WAIT=15)
def test_tunnel_stopped_mid_migration_leaves_vm_on_source_and_no_orphan(
    manager_ssh: Path,
    vpn_dir: Path,
    lab: Lab,
    nat_nodes: tuple[LabNode, LabNode],
    lab_guests: LabGuests,
) -> None:
    """The tunnel goes down while the disk is being copied to the other side of it."""
    vpn1, nat2 = nat_nodes
    server, client = _node(vpn1), _node(nat2)
    tunnel = services.create_tunnel(name="t1", subnet="100.64.0.0/24", server=server)
    services.add_client(tunnel, client)
    name = lab_guests.track(f"vcut{int(time.time() * 1000) % 100000}", nat2, vpn1)
    disk = Path("/var/lib/libvirt/images") / f"{name}.qcow2"
    try:
        services.up(client)
        client.refresh_from_db()
        guest, _ = lab.boot_guest(nat2, name, timeout=90, disk_mib=64)
        assert inventory.refresh_node(client).ok and inventory.refresh_node(server).ok
        vm = VirtualMachine.objects.get(uuid=guest.uuid)
        # 1 MiB/s keeps the copy going long enough to pull the tunnel from under it.
        job = request_migration(vm, server, migration_options({"bandwidth_mib_s": 1}), actor())
        stopped: list[str] = []

        def stop_tunnel_when_copying(ctx: JobContext) -> None:
            original = ctx.progress

            def progress(percent: int, **detail: object) -> None:
                original(percent, **detail)
                copied = detail.get("data_processed") or 0
                if not stopped and isinstance(copied, int) and copied > 512 * 1024:
                    stopped.append(services.stop(server))

            ctx.progress = progress  # type: ignore[method-assign]
            run_migrate(ctx)

        started = time.monotonic()
        status = runner.execute(job.pk, handler=stop_tunnel_when_copying)
        failed_after = time.monotonic() - started
        job.refresh_from_db()
        assert stopped == ["vpn1: OpenVPN stopped"], (stopped, job.log)
        assert status == JobStatus.FAILED, job.log
        assert job.error.startswith("VPN down: tunnel t1 is down on vpn1"), job.error
        assert "the VM stays on nat2" in job.error, job.error
        print(f"VPN-CUT failed after {failed_after:.1f}s: {job.error}")

        # At once: the VM runs on the source, nothing of it is left on the destination.
        assert nat2.virsh("domstate", name, check=True).stdout.strip() == "running"
        assert vpn1.virsh("domstate", name).returncode != 0
        assert not vpn1.host_path(disk).exists(), job.log
        assert nat2.host_path(disk).exists()
        # The admin brings the tunnel back: libvirt finishes unwinding the cancelled
        # migration on the source and the guest goes on there, undisturbed.
        services.start(server)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and _source_job_type(nat2, name) not in ("None", ""):
            time.sleep(1)
        assert _source_job_type(nat2, name) in ("None", "")
        assert nat2.virsh("domstate", name, check=True).stdout.strip() == "running"
        before = max(serial_numbers(guest.serial_log, ALIVE), default=0)
        assert _wait_alive_after(guest.serial_log, before) > before
        assert vpn1.virsh("domstate", name).returncode != 0
        assert reconcile_all() == {}  # nothing left for the reconciler either
        vm.refresh_from_db()
        assert vm.node_id == client.pk
    finally:
        services.stop(client)
        services.stop(server)


def _assert_no_trace_of(tunnel: str, *nodes: LabNode) -> None:
    """No config, management password, pidfile or tunnel device of ``tunnel`` is left."""
    for node in nodes:
        for path in (f"/etc/openvpn/kvmmgr/{tunnel}.conf", f"/etc/openvpn/kvmmgr/{tunnel}.mgmt"):
            assert not node.host_path(path).exists(), (node.name, path)
        assert not node.host_path(f"/run/openvpn/kvmmgr-{tunnel}.pid").exists(), node.name
        shown = subprocess.run(
            ["ip", "-n", node.netns, "-o", "link", "show", f"kvpn-{tunnel}"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        assert shown.returncode != 0, (node.name, shown.stdout)


@pytest.mark.django_db
def test_up_with_an_unreachable_server_rolls_back_on_both_nodes(
    manager_ssh: Path, vpn_dir: Path, lab: Lab, nat_nodes: tuple[LabNode, LabNode]
) -> None:
    """Clients dial an endpoint that drops everything: clear error, nothing left behind."""
    vpn1, nat2 = nat_nodes
    server, client = _node(vpn1), _node(nat2)
    tunnel = services.create_tunnel(
        name="t9", subnet="100.64.0.0/24", server=server, server_endpoint="198.51.100.250"
    )
    services.add_client(tunnel, client)
    started = time.monotonic()
    said: list[str] = []
    with pytest.raises(services.VpnError) as failure:
        services.up(client, timeout=8, on_line=said.append)
    message = failure.value.message
    assert message.startswith(
        "nat2 could not reach the tunnel server vpn1 at 198.51.100.250:1194/udp within 8 s"
    ), message
    assert "check the address, the port and any firewall" in message
    assert time.monotonic() - started < 60
    # Each step was reported as it happened, the rollback of both nodes included.
    assert "nat2: waiting up to 8 s for the server to answer" in said, said
    assert said[-2:] == [
        "nat2: rolled back (files as they were, daemon as it was)",
        "vpn1: rolled back (files as they were, daemon as it was)",
    ], said
    _assert_no_trace_of("t9", vpn1, nat2)
    member = TunnelMember.objects.get(node=client)
    assert member.state == VpnState.ERROR and "could not reach" in member.state_reason
    client.refresh_from_db()
    assert client.migration_address == ""  # unchanged: only a successful up sets it


@pytest.mark.django_db
def test_aborting_vpn_up_mid_way_rolls_back_what_it_did(
    manager_ssh: Path, vpn_dir: Path, lab: Lab, nat_nodes: tuple[LabNode, LabNode]
) -> None:
    """The admin aborts an `up` job once the server side is running: the job stops
    before it touches the client and undoes the server's part, as a failure would."""
    vpn1, nat2 = nat_nodes
    server, client = _node(vpn1), _node(nat2)
    tunnel = services.create_tunnel(name="t8", subnet="100.64.0.0/24", server=server)
    services.add_client(tunnel, client)
    job = vpn_jobs.request_action(client, "up", actor())

    def abort_once_the_server_runs(ctx: JobContext) -> None:
        log_line = ctx.log

        def log(line: str) -> None:
            log_line(line)
            if line == "vpn1: OpenVPN started":
                assert request_abort(Job.objects.get(pk=ctx.job.pk), actor())

        ctx.log = log  # type: ignore[method-assign]
        vpn_jobs.run_action(ctx)

    assert runner.execute(job.pk, handler=abort_once_the_server_runs) == JobStatus.ABORTED
    job.refresh_from_db()
    assert "vpn1: OpenVPN started" in job.log
    assert "vpn1: rolled back (files as they were, daemon as it was)" in job.log, job.log
    assert "nat2: OpenVPN" not in job.log and "nat2: waiting" not in job.log, job.log
    _assert_no_trace_of("t8", vpn1, nat2)
    client.refresh_from_db()
    assert client.migration_address == ""
