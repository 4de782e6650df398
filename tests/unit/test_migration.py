"""Migration pieces that need no second host: options, request checks, flags, stats."""

from __future__ import annotations

import time
import uuid

import libvirt
import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from jobs.choices import JobStatus
from jobs.errors import JobConflict
from nodes.hypervisor.migration import MigrationRequest, stats_from_libvirt
from nodes.hypervisor.states import VMState
from nodes.services.trust import display_peer_uri, known_hosts_name, peer_path_failure, peer_uri
from tests.support.factories import actor, make_node, make_vm
from vms.choices import JobKind
from vms.forms.migrate import migration_options
from vms.services.migration.options import MigrationOptions
from vms.services.migration.prechecks import tcg_live_migration_warning
from vms.services.migration.request import request_migration
from vms.services.migration.watch import DestinationWatch, StallWatch, destination_lost_reason


def _online(name: str, host: str = "127.0.0.1", **fields: object):
    return make_node(
        name=name, uri=f"qemu+ssh://root@{host}/system", last_seen=timezone.now(), **fields
    )


def test_defaults_and_valid_options() -> None:
    assert migration_options({}) == MigrationOptions()
    options = migration_options(
        {
            "bandwidth_mib_s": "100",
            "max_downtime_ms": "300",
            "postcopy": "on",
            "timeout_policy": "postcopy",
            "completion_timeout_s": 60,
        }
    )
    assert (options.bandwidth_mib_s, options.max_downtime_ms, options.postcopy) == (100, 300, True)


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        ({"bandwidth_mib_s": "fast"}, "bandwidth_mib_s", "whole number"),
        ({"bandwidth_mib_s": "-5"}, "bandwidth_mib_s", "between 0"),
        ({"max_downtime_ms": "abc"}, "max_downtime_ms", "whole number"),
        ({"max_downtime_ms": "-1"}, "max_downtime_ms", "between"),
        ({"max_downtime_ms": "20"}, "max_downtime_ms", "never converges"),
        ({"completion_timeout_s": "0"}, "completion_timeout_s", "between"),
        ({"timeout_policy": "explode"}, "timeout_policy", "one of"),
        ({"timeout_policy": "postcopy"}, "timeout_policy", "post-copy enabled"),
        ({"postcopy": True, "compressed": True}, "compression", "refuses compression"),
        ({"postcopy": True, "compression": "zstd"}, "compression", "refuses compression"),
        ({"compression": "lz4"}, "compression", "one of auto, none"),
        ({"compression": "xbzrle", "parallel_connections": "2"}, "compression", "not xbzrle"),
        ({"parallel_connections": "99"}, "parallel_connections", "between"),
        ({"stall_timeout_s": "2"}, "stall_timeout_s", "between 5"),
        ({"stall_timeout_s": "soon"}, "stall_timeout_s", "whole number"),
    ],
)
def test_bad_options_are_refused(data: dict, field: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        migration_options(data)
    assert fragment in " ".join(info.value.message_dict[field])


def test_unknown_option_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown migration options: tunnelled"):
        migration_options({"tunnelled": "1"})


@pytest.mark.django_db
def test_requests_refused_before_a_job_exists() -> None:
    source, dest = _online("n1"), _online("n2", "localhost")
    vm = make_vm(source, name="web")
    with pytest.raises(ValidationError, match="already on n1"):
        request_migration(vm, source, MigrationOptions(), actor("t"))
    with pytest.raises(ValidationError, match="Unknown destination"):
        request_migration(vm, None, MigrationOptions(), actor("t"))
    offline = make_node(name="n3", uri="qemu+ssh://root@127.0.0.1:2222/system")
    with pytest.raises(ValidationError, match="n3 is offline"):
        request_migration(vm, offline, MigrationOptions(), actor("t"))
    disabled = _online("n4", "127.0.0.1:2223", enabled=False)
    with pytest.raises(ValidationError, match="n4 is disabled"):
        request_migration(vm, disabled, MigrationOptions(), actor("t"))
    local = make_node(name="n5", uri="test:///default", last_seen=timezone.now())
    with pytest.raises(ValidationError, match="not a qemu\\+ssh node"):
        request_migration(vm, local, MigrationOptions(), actor("t"))
    crashed = make_vm(source, name="bad", state=VMState.CRASHED)
    with pytest.raises(ValidationError, match="cannot migrate now"):
        request_migration(crashed, dest, MigrationOptions(), actor("t"))


@pytest.mark.django_db
def test_a_vm_in_another_job_cannot_migrate() -> None:
    source, dest = _online("n1"), _online("n2", "localhost")
    vm = make_vm(source, name="web")
    job = request_migration(vm, dest, MigrationOptions(), actor("alice"))
    assert (job.kind, job.status, job.params["destination"]) == (
        JobKind.MIGRATE,
        JobStatus.QUEUED,
        "n2",
    )
    with pytest.raises(JobConflict, match="already has an active job"):
        request_migration(vm, dest, MigrationOptions(), actor("bob"))


@pytest.mark.django_db
def test_peer_uri_uses_the_peer_path_never_the_managers_port_forward() -> None:
    # The manager reaches n2 through a router's port forward; peers use its tunnel
    # address and its own sshd on port 22 (the default once a migration address is set).
    dest = make_node(
        name="n2", uri="qemu+ssh://admin@127.0.0.1:2222/system", migration_address="100.64.0.2"
    )
    assert peer_uri(dest) == (
        "qemu+ssh://admin@100.64.0.2/system?command=/etc/libvirt/kvmmgr/kvmmgr-ssh&no_tty=1"
    )
    assert display_peer_uri(dest) == "qemu+ssh://admin@100.64.0.2/system"
    assert known_hosts_name(dest) == "100.64.0.2"
    assert dest.peer_path == "admin@100.64.0.2:22"
    dest.migration_ssh_port = 2200
    assert display_peer_uri(dest) == "qemu+ssh://admin@100.64.0.2:2200/system"
    assert known_hosts_name(dest) == "[100.64.0.2]:2200"
    assert dest.peer_path == "admin@100.64.0.2:2200"


@pytest.mark.django_db
def test_without_a_migration_address_peers_use_the_managers_path() -> None:
    dest = make_node(name="n2", uri="qemu+ssh://root@127.0.0.1:2222/system")
    assert display_peer_uri(dest) == "qemu+ssh://root@127.0.0.1:2222/system"
    assert known_hosts_name(dest) == "[127.0.0.1]:2222"
    dest.migration_ssh_port = 22
    assert display_peer_uri(dest) == "qemu+ssh://root@127.0.0.1/system"


@pytest.mark.django_db
def test_peer_path_failure_names_the_path_and_the_setting() -> None:
    source = make_node(name="n1", uri="qemu+ssh://root@127.0.0.1/system")
    dest = make_node(
        name="n2", uri="qemu+ssh://root@localhost:2222/system", migration_address="100.64.0.2",
        migration_ssh_port=2222,
    )  # fmt: skip
    message = peer_path_failure(
        source, dest, "ssh: connect to host 100.64.0.2 port 2222: Connection refused"
    )
    assert message.startswith(
        "n1 cannot reach n2's libvirt over the peer path root@100.64.0.2:2222 "
        "(its migration address and migration ssh port)"
    ), message
    assert "Connection refused" in message
    assert "not use the manager's path (qemu+ssh://root@localhost:2222/system)" in message
    assert "manage.py editnode n2 --migration-address ADDRESS --migration-ssh-port PORT" in message


def test_request_flags_params_and_equivalent_command() -> None:
    request = MigrationRequest(
        domain_uuid="u",
        domain_name="web",
        source_uri="qemu+ssh://root@10.0.0.1/system",
        dest_uri="qemu+ssh://root@100.64.0.2/system?command=x",
        dest_address="100.64.0.2",
        bandwidth_mib_s=50,
        auto_converge=True,
        display_dest_uri="qemu+ssh://root@100.64.0.2/system",
    )
    flags = request.flags()
    for flag in (
        "LIVE",
        "PEER2PEER",
        "PERSIST_DEST",
        "UNDEFINE_SOURCE",
        "NON_SHARED_DISK",
        "AUTO_CONVERGE",
        "ABORT_ON_ERROR",
    ):
        assert flags & getattr(libvirt, f"VIR_MIGRATE_{flag}")
    assert not flags & libvirt.VIR_MIGRATE_POSTCOPY
    assert request.params() == {
        "migrate_uri": "tcp://100.64.0.2",
        "disks_uri": "tcp://100.64.0.2",
        "bandwidth": 50,
    }
    assert request.virsh_command() == [
        "virsh",
        "-c",
        "qemu+ssh://root@10.0.0.1/system",
        "migrate",
        "--verbose",
        "--live",
        "--p2p",
        "--persistent",
        "--undefinesource",
        "--copy-storage-all",
        "--auto-converge",
        "--bandwidth",
        "50",
        "--migrateuri",
        "tcp://100.64.0.2",
        "--disks-uri",
        "tcp://100.64.0.2",
        "web",
        "qemu+ssh://root@100.64.0.2/system",
    ]
    ipv6 = MigrationRequest("u", "web", "s", "d", "fd00::2")
    assert ipv6.tcp_uri == "tcp://[fd00::2]"


def test_stats_phases() -> None:
    base = {"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED, "data_total": 200, "data_processed": 50}
    disk = stats_from_libvirt({**base, "disk_total": 100, "disk_remaining": 60})
    assert disk.phase == "disk copy" and disk.percent == 25
    memory = stats_from_libvirt(
        {
            **base,
            "disk_total": 100,
            "disk_remaining": 0,
            "memory_processed": 10,
            "memory_iteration": 3,
            "memory_dirty_rate": 100,
            "memory_page_size": 4096,
        }
    )
    assert memory.phase == "memory pre-copy, iteration 3"
    assert memory.dirty_rate_bps == 409600
    assert stats_from_libvirt({**base, "memory_postcopy_requests": 4}).phase == "post-copy"
    done = stats_from_libvirt({**base, "type": libvirt.VIR_DOMAIN_JOB_COMPLETED, "downtime": 42})
    assert done.phase == "completed" and done.downtime_ms == 42
    assert stats_from_libvirt({"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED}).phase == "setting up"


@pytest.mark.django_db
def test_migrate_page_validates_and_queues(admin_client) -> None:
    from django.urls import reverse

    from jobs.models import Job

    source, dest = _online("n1"), _online("n2", "localhost")
    vm = make_vm(source, name="web")
    url = reverse("vms:vm_migrate", args=[vm.uuid])
    page = admin_client.get(url).content.decode()
    assert "n2" in page and 'name="csrfmiddlewaretoken"' in page
    response = admin_client.post(url, {"destination": dest.pk, "bandwidth_mib_s": "-3"})
    assert response.status_code == 200 and "between 0" in response.content.decode()
    assert not Job.objects.exists()
    response = admin_client.post(url, {"destination": source.pk})
    assert "already on n1" in response.content.decode()
    response = admin_client.post(url, {"destination": dest.pk, "max_downtime_ms": "300"})
    job = Job.objects.get()
    assert response.status_code == 302 and response.url.endswith(f"/jobs/{job.pk}/")
    assert job.params["max_downtime_ms"] == 300


@pytest.mark.django_db
def test_migratevm_command_refuses_bad_input() -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    source = _online("n1")
    _online("n2", "localhost")
    make_vm(source, name="web")
    with pytest.raises(CommandError, match="no node named 'nowhere'"):
        call_command("migratevm", "web", "nowhere")
    with pytest.raises(CommandError, match="whole number"):
        call_command("migratevm", "web", "n2", "--bandwidth", "lots")
    with pytest.raises(CommandError, match="already on n1"):
        call_command("migratevm", "web", "n1")


@pytest.mark.django_db
def test_postcopy_switch_is_requested_only_for_running_postcopy_migrations(
    admin_client,
) -> None:
    from django.urls import reverse

    from jobs.models import Job
    from tests.support.factories import actor
    from vms.services.migration.request import request_postcopy

    source, dest = _online("n1"), _online("n2", "localhost")
    vm = make_vm(source, name="web")
    plain = request_migration(vm, dest, MigrationOptions(), actor())
    with pytest.raises(ValidationError, match="post-copy allowed"):
        request_postcopy(plain, actor())
    Job.objects.filter(pk=plain.pk).update(status=JobStatus.FAILED)
    job = request_migration(vm, dest, migration_options({"postcopy": "on"}), actor())
    with pytest.raises(ValidationError, match="not running"):
        request_postcopy(job, actor())
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)
    assert (
        "Switch to post-copy"
        in admin_client.get(reverse("jobs:job_detail", args=[job.pk])).content.decode()
    )
    response = admin_client.post(reverse("jobs:job_action", args=[job.pk, "postcopy"]))
    assert response.status_code == 302
    assert Job.objects.get(pk=job.pk).postcopy_requested
    assert (
        admin_client.get(reverse("jobs:job_action", args=[job.pk, "postcopy"])).status_code == 405
    )


def test_stall_watch_gives_up_only_after_no_data_moved_for_the_timeout() -> None:
    watch = StallWatch(timeout_s=30)
    assert migration_options({}).stall_timeout_s == 30
    # Slow but moving (1 KiB every 10 s) never counts as a stall.
    for second in range(0, 120, 10):
        assert watch.observe(second, 5 * 1024 * 1024 + second * 1024) == ""
    frozen = watch.last_bytes
    assert watch.observe(139, frozen) == ""  # 29 s of silence: not yet
    reason = watch.observe(141, frozen)
    assert reason.startswith("no data moved for 31 s (stall timeout 30 s) after 5 MiB")
    assert "link to the destination is down" in reason
    # Any movement resets the clock.
    assert watch.observe(142, frozen + 1) == ""
    assert watch.observe(171, frozen + 1) == ""


def _wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_destination_watch_reports_an_incoming_domain_that_vanished() -> None:
    """libvirt's test driver stands in for the destination: the watch sees the domain,
    then the domain goes away (as a killed qemu's incoming copy does)."""
    from nodes.hypervisor.connection import connection_for

    uri = "test:///default"
    name = f"incoming-{uuid.uuid4().hex[:8]}"
    dom_uuid = str(uuid.uuid4())
    xml = (
        f"<domain type='test'><name>{name}</name><uuid>{dom_uuid}</uuid>"
        "<memory>65536</memory><os><type>hvm</type></os></domain>"
    )
    with connection_for(uri) as conn:
        domain = conn.createXML(xml, 0)  # transient, like an incoming migration
    reason = destination_lost_reason("node2", name)
    with DestinationWatch(uri, dom_uuid, reason, interval_s=0.02) as watch:
        assert _wait_until(lambda: watch.seen)
        assert watch.lost == ""
        domain.destroy()
        assert _wait_until(lambda: watch.lost == reason)
    assert f"/var/log/libvirt/qemu/{name}.log" in reason and "on node2" in reason


def test_destination_watch_says_nothing_before_the_domain_appeared() -> None:
    """Before libvirt prepared the destination, an absent domain is normal."""
    with DestinationWatch("test:///default", str(uuid.uuid4()), "gone", interval_s=0.02) as watch:
        time.sleep(0.2)
        assert not watch.seen and watch.lost == ""


def test_destination_watch_counts_a_copy_never_seen_running_once_data_moved() -> None:
    """A destination copy may die before the watch first looks: once the source
    reported data moved, a domain that does not run there is lost."""
    with DestinationWatch("test:///default", str(uuid.uuid4()), "gone", interval_s=0.02) as watch:
        time.sleep(0.1)
        assert watch.lost == ""
        watch.copying_started()
        assert _wait_until(lambda: watch.lost == "gone")


def test_a_live_migration_of_a_tcg_guest_is_warned_about_on_qemu_before_10_only() -> None:
    tcg = "<domain type='qemu'><name>web1</name></domain>"
    mixed = {"n1": "7.2.0", "n2": "10.0.2"}
    warning = tcg_live_migration_warning("web1", tcg, mixed)
    assert warning is not None
    assert warning.startswith("WARNING: web1 runs under TCG")
    assert "n1 has QEMU 7.2.0" in warning and "n2" not in warning
    assert "QEMU 7.2" in warning and "not seen with QEMU 10.0.2" in warning
    assert "cold migration" in warning
    assert tcg_live_migration_warning("web1", tcg, {"n1": "10.0.2", "n2": "10.0.2"}) is None
    # A version that could not be read counts as old.
    unknown = tcg_live_migration_warning("web1", tcg, {"n1": "10.0.2", "n2": ""})
    assert unknown is not None and "n2 has QEMU of unknown version" in unknown
    kvm = "<domain type='kvm'><name>web1</name></domain>"
    assert tcg_live_migration_warning("web1", kvm, mixed) is None


@pytest.mark.django_db
def test_job_page_shows_bytes_on_the_wire_downtime_and_time_of_a_migration(admin_client) -> None:
    from django.urls import reverse

    from jobs.models import Job
    from tests.support.factories import actor

    source, dest = _online("n1"), _online("n2", "localhost")
    job = request_migration(make_vm(source, name="web"), dest, MigrationOptions(), actor())
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.SUCCEEDED,
        progress_detail={"data_processed": 40 << 20, "downtime_ms": 70, "wall_seconds": 3.6},
    )
    page = admin_client.get(reverse("jobs:job_detail", args=[job.pk])).content.decode()
    assert "On the wire: 40.0\xa0MB · downtime 70 ms · migration 3.6 s" in page, page


@pytest.mark.django_db
def test_auto_converge_is_used_over_a_slow_link_unless_turned_off(settings) -> None:
    from jobs.context import JobContext
    from tests.support.factories import actor
    from vms.services.migration.prechecks import auto_converge_wanted

    source, dest = _online("n1"), _online("n2", "localhost")
    job = request_migration(make_vm(source, name="web"), dest, MigrationOptions(), actor())
    ctx = JobContext(job)
    assert not auto_converge_wanted(
        ctx, migration_options({}), dest
    )  # nothing says the link is slow
    assert auto_converge_wanted(ctx, migration_options({"auto_converge": "on"}), dest)
    assert auto_converge_wanted(ctx, migration_options({"bandwidth_mib_s": "10"}), dest)
    assert "auto-converge: on (the bandwidth is capped at 10 MiB/s)" in job.log
    settings.KVMMGR_AUTO_CONVERGE_SLOW_LINKS = False
    assert not auto_converge_wanted(ctx, migration_options({"bandwidth_mib_s": "10"}), dest)
