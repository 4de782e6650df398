"""Mixed fleets: migration features per node and per migration, for both platforms.

Nodes are libvirt's test driver with the facts a Debian 12 node (libvirt 9.0, QEMU
7.2) or a Debian 13 one (libvirt 11.3, QEMU 10.0) records: the facts are read from
the test driver, then given those versions as the adapter reads them from a real
host (the test driver has no QEMU).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import libvirt
import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from jobs.models import Job
from nodes import features as nf
from nodes.hypervisor import collect_facts, node_versions, probe_host
from nodes.hypervisor.migration import MigrationRequest, xbzrle_cache_bytes
from nodes.models import Node
from tests.support.factories import actor, make_node, make_vm
from vms.forms.migrate import migration_options
from vms.services.migration import features as mf
from vms.services.migration.options import MigrationOptions
from vms.services.migration.request import request_migration

DEBIAN12 = ("9.0.0", "7.2.0")
DEBIAN13 = ("11.3.0", "10.0.2")
ALL = ["zstd", "zlib", "parallel", "postcopy", "xbzrle", "sync_writes"]


def _facts(versions: tuple[str, str]) -> dict[str, object]:
    libvirt_version, qemu_version = versions
    return {
        **collect_facts("test:///default"),
        "libvirt_version": libvirt_version,
        "hypervisor_version": f"QEMU {qemu_version}",
        "qemu_version": qemu_version,
        "migration_features": nf.features_for(libvirt_version, qemu_version),
    }


def _node(name: str, versions: tuple[str, str], host: str) -> Node:
    return make_node(
        name=name,
        uri=f"qemu+ssh://root@{host}/system",
        last_seen=timezone.now(),
        facts=_facts(versions),
        facts_at=timezone.now(),
    )


def test_features_by_platform() -> None:
    assert nf.features_for(*DEBIAN13) == ALL
    # libvirt 9.0 has no multifd compression (9.4 added zlib/zstd); the rest it has.
    assert nf.features_for(*DEBIAN12) == ["parallel", "postcopy", "xbzrle", "sync_writes"]
    assert nf.features_for("9.4.0", "7.2.0") == ALL
    assert nf.features_for("11.3.0", "") == []  # not a QEMU host
    assert nf.parse_version("QEMU 10.0.2") == (10, 0, 2)
    assert nf.parse_version("7.2") == (7, 2, 0)
    assert nf.parse_version("unknown") is None


def test_facts_read_before_versions_had_their_own_fields() -> None:
    old = {"libvirt_version": "9.0.0", "hypervisor_version": "QEMU 7.2.0"}
    assert nf.qemu_version_of(old) == "7.2.0"
    assert nf.features_of(old) == nf.features_for(*DEBIAN12)
    assert nf.features_of({"libvirt_version": "11.3.0", "hypervisor_version": "Test 2.0.0"}) == []


def test_the_adapter_reads_versions_and_features_from_libvirt(
    node_xml: Callable[..., str],
) -> None:
    uri = node_xml(1)
    major, rest = divmod(libvirt.getVersion(), 1_000_000)
    installed = f"{major}.{rest // 1000}.{rest % 1000}"
    report = probe_host(uri)
    assert report.libvirt_version == installed
    # The test driver is no QEMU: no QEMU version, no migration features.
    assert (report.qemu_version, report.migration_features) == ("", [])
    versions = node_versions(uri)
    assert (versions.libvirt_version, versions.qemu_version) == (installed, "")
    facts = collect_facts(uri)
    assert facts["migration_features"] == [] and facts["qemu_version"] == ""
    json.dumps(facts)


@pytest.mark.django_db
def test_a_feature_is_refused_when_one_end_lacks_it() -> None:
    old, new, new2 = (
        _node("old", DEBIAN12, "127.0.0.1"),
        _node("new", DEBIAN13, "localhost"),
        _node("new2", DEBIAN13, "127.0.0.2"),
    )
    vm = make_vm(new, name="web")
    with pytest.raises(ValidationError) as info:
        request_migration(vm, old, migration_options({"compression": "zstd"}), actor())
    message = " ".join(info.value.message_dict["compression"])
    assert "zstd multifd compression needs libvirt 9.4.0" in message
    assert "old has libvirt 9.0.0, QEMU 7.2.0" in message and "new has" not in message
    with pytest.raises(ValidationError, match="zlib multifd compression"):
        request_migration(vm, old, migration_options({"compression": "zlib"}), actor())
    assert not Job.objects.exists()
    # What both have is accepted: parallel connections, post-copy, xbzrle, sync writes.
    for options in (
        {"parallel_connections": "4"},
        {"compression": "xbzrle", "sync_writes": "on"},
        {"postcopy": "on"},
        {},  # auto: decided in the job
    ):
        job = request_migration(vm, old, migration_options(options), actor())
        Job.objects.filter(pk=job.pk).delete()
    job = request_migration(vm, new2, migration_options({"compression": "zstd"}), actor())
    assert job.params["compression"] == "zstd"


@pytest.mark.django_db
def test_nodes_whose_versions_are_not_read_yet_are_judged_by_the_job() -> None:
    new = _node("new", DEBIAN13, "localhost")
    blank = make_node(
        name="blank", uri="qemu+ssh://root@127.0.0.1/system", last_seen=timezone.now()
    )
    vm = make_vm(new, name="web")
    job = request_migration(vm, blank, migration_options({"compression": "zstd"}), actor())
    assert job.params["compression"] == "zstd"


def test_the_plan_uses_only_what_both_ends_have() -> None:
    old = mf.Endpoint("old", *DEBIAN12, frozenset(nf.features_for(*DEBIAN12)))
    new = mf.Endpoint("new", *DEBIAN13, frozenset(nf.features_for(*DEBIAN13)))
    new2 = mf.Endpoint("new2", *DEBIAN13, frozenset(ALL))
    slow = "new2 is reached through VPN tunnel t1"
    # Auto over a slow link: XBZRLE (both Debian 12 and 13 have it), no multifd.
    plan = mf.plan_features(mf.Wanted(), new, new2, slow_link=slow)
    assert (plan.compression, plan.parallel_connections) == ("xbzrle", 0)
    assert plan.describe() == "xbzrle compression"
    assert plan.notes[0].startswith(f"compression: xbzrle (auto: {slow};")
    assert mf.plan_features(mf.Wanted(), new, old, slow_link=slow).compression == "xbzrle"
    # An end without XBZRLE: none, and which node lacks it.
    bare = mf.Endpoint("bare", *DEBIAN13, frozenset({"parallel"}))
    plan = mf.plan_features(mf.Wanted(), new, bare, slow_link=slow)
    assert (plan.compression, plan.parallel_connections) == ("", 0)
    assert plan.describe() == "none (plain pre-copy)"
    assert "bare (libvirt 11.3.0, QEMU 10.0.2) has no XBZRLE" in plan.notes[0]
    # Parallel connections asked for: they carry multifd, so auto means zstd there.
    plan = mf.plan_features(mf.Wanted(parallel_connections=2), new, new2, slow_link=slow)
    assert plan.describe() == "zstd multifd compression over 2 parallel connections"
    assert plan.notes == (
        f"compression: zstd (auto, over the parallel connections asked for; {slow})",
    )
    # A Debian 12 end: no multifd compression there; which node lacks it is said.
    plan = mf.plan_features(mf.Wanted(parallel_connections=2), new, old, slow_link=slow)
    assert (plan.compression, plan.parallel_connections) == ("", 2)
    assert "old (libvirt 9.0.0, QEMU 7.2.0) has no zstd multifd compression" in plan.notes[0]
    # Auto on a fast link, or with post-copy allowed: no compression.
    assert mf.plan_features(mf.Wanted(), new, new2).compression == ""
    plan = mf.plan_features(mf.Wanted(postcopy=True), new, new2, slow_link=slow)
    assert plan.compression == "" and plan.postcopy and "post-copy" in plan.notes[0]
    # Explicit choices are kept (missing_features refused the impossible ones).
    plan = mf.plan_features(mf.Wanted("zlib", 4, sync_writes=True), new, new2)
    assert plan.describe() == (
        "zlib multifd compression over 4 parallel connections, synchronous disk writes"
    )
    assert mf.plan_features(mf.Wanted("none"), new, new2, slow_link=slow).compression == ""
    assert mf.missing_features(mf.Wanted("zstd"), new, new2) == {}
    assert set(mf.missing_features(mf.Wanted("zstd", 2), old, new)) == {"zstd"}


@pytest.mark.django_db
def test_a_bandwidth_cap_marks_a_slow_link() -> None:
    dest = make_node(name="d", uri="qemu+ssh://root@127.0.0.1/system")
    assert mf.slow_link_reason(50, dest) == "the bandwidth is capped at 50 MiB/s"
    assert mf.slow_link_reason(0, dest) == ""
    assert mf.slow_link_reason(1000, dest) == ""


def test_zstd_request_flags_params_and_equivalent_command() -> None:
    request = MigrationRequest(
        domain_uuid="u",
        domain_name="web",
        source_uri="qemu+ssh://root@10.0.0.1/system",
        dest_uri="qemu+ssh://root@100.64.0.2/system?command=x",
        dest_address="100.64.0.2",
        compression="zstd",
        parallel_connections=2,
        sync_writes=True,
        display_dest_uri="qemu+ssh://root@100.64.0.2/system",
    )
    flags = request.flags()
    for flag in ("COMPRESSED", "PARALLEL", "NON_SHARED_DISK", "NON_SHARED_SYNCHRONOUS_WRITES"):
        assert flags & getattr(libvirt, f"VIR_MIGRATE_{flag}"), flag
    params = request.params()
    assert params[libvirt.VIR_MIGRATE_PARAM_COMPRESSION] == "zstd"
    assert params[libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] == 2
    argv = request.virsh_command()
    joined = " ".join(argv)
    assert "--copy-storage-all --copy-storage-synchronous-writes" in joined
    assert "--compressed --comp-methods zstd" in joined
    assert "--parallel --parallel-connections 2" in joined
    with pytest.raises(ValueError, match="needs parallel connections"):
        MigrationRequest("u", "web", "s", "d", "a", compression="zstd")
    with pytest.raises(ValueError, match="unknown compression"):
        MigrationRequest("u", "web", "s", "d", "a", compression="lz4")
    xbzrle = MigrationRequest("u", "web", "s", "d", "a", compression="xbzrle")
    assert "--compressed --comp-methods xbzrle" in " ".join(xbzrle.virsh_command())
    assert not xbzrle.flags() & libvirt.VIR_MIGRATE_PARALLEL


def test_xbzrle_cache_is_sized_to_the_guest() -> None:
    mib = 1024 * 1024
    # Half the guest's RAM, rounded up to a power of two (QEMU wants one) ...
    assert xbzrle_cache_bytes(192 * mib) == 128 * mib
    assert xbzrle_cache_bytes(4096 * mib) == 1024 * mib
    assert xbzrle_cache_bytes(1024 * mib) == 512 * mib
    # ... never below QEMU's own default nor above the cap.
    assert xbzrle_cache_bytes(64 * mib) == 64 * mib
    assert xbzrle_cache_bytes(64 * 1024 * mib) == 1024 * mib
    fixed = MigrationRequest(
        "u", "web", "s", "d", "a", compression="xbzrle", xbzrle_cache=256 * mib
    )
    assert fixed.params()[libvirt.VIR_MIGRATE_PARAM_COMPRESSION_XBZRLE_CACHE] == 256 * mib
    assert f"--comp-xbzrle-cache {256 * mib}" in " ".join(fixed.virsh_command())
    # Another method never carries the XBZRLE cache.
    zstd = MigrationRequest(
        "u", "web", "s", "d", "a", compression="zstd", parallel_connections=2,
        xbzrle_cache=256 * mib,
    )  # fmt: skip
    assert libvirt.VIR_MIGRATE_PARAM_COMPRESSION_XBZRLE_CACHE not in zstd.params()


def test_compression_options() -> None:
    assert MigrationOptions().compression == "auto"
    assert migration_options({"compression": "ZSTD"}).compression == "zstd"
    # The older yes/no option means libvirt's default method.
    assert migration_options({"compressed": "on"}).compression == "xbzrle"
    assert migration_options({"compressed": ""}).compression == "auto"


@pytest.mark.django_db
def test_migrate_page_shows_shared_features_and_refuses_a_missing_one(admin_client) -> None:
    old, new = _node("old", DEBIAN12, "127.0.0.1"), _node("new", DEBIAN13, "localhost")
    vm = make_vm(new, name="web")
    url = reverse("vms:vm_migrate", args=[vm.uuid])
    page = admin_client.get(url).content.decode()
    assert "libvirt 11.3.0, QEMU 10.0.2: zstd multifd compression" in page
    assert "both have: parallel connections, post-copy, XBZRLE compression" in page
    assert '<option value="zstd"' in page
    response = admin_client.post(url, {"destination": old.pk, "compression": "zstd"})
    assert response.status_code == 200
    assert "old has libvirt 9.0.0, QEMU 7.2.0" in response.content.decode()
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_migratevm_refuses_a_feature_the_destination_lacks() -> None:
    old, new = _node("old", DEBIAN12, "127.0.0.1"), _node("new", DEBIAN13, "localhost")
    make_vm(new, name="web")
    with pytest.raises(CommandError, match=r"zstd multifd compression needs libvirt 9\.4\.0"):
        call_command("migratevm", "web", "old", "--compress", "zstd", stdout=io.StringIO())
    assert not Job.objects.exists()
    assert old.migration_feature_rows[0] == (
        "zstd multifd compression",
        False,
        nf.BY_KEY["zstd"].why,
    )


@pytest.mark.django_db
def test_checknode_and_node_page_show_versions_and_features(
    admin_client, node_xml: Callable[..., str]
) -> None:
    node = make_node(name="t1", uri=node_xml(1))
    out = io.StringIO()
    call_command("checknode", "t1", stdout=out)
    text = out.getvalue()
    assert "QEMU:        (not a QEMU host)" in text
    assert "no  zstd multifd compression" in text
    new = _node("new", DEBIAN13, "localhost")
    page = admin_client.get(reverse("stats:node_stats", args=[new.pk])).content.decode()
    assert "libvirt 11.3.0 · QEMU 10.0.2" in page
    assert "<td>zstd multifd compression</td><td>yes</td>" in page
    old = _node("old", DEBIAN12, "127.0.0.1")
    page = admin_client.get(reverse("stats:node_stats", args=[old.pk])).content.decode()
    assert "libvirt 9.0.0 · QEMU 7.2.0" in page
    assert "<td>zstd multifd compression</td><td>no</td>" in page
    assert "<td>post-copy</td><td>yes</td>" in page
    page = admin_client.get(reverse("stats:node_stats", args=[node.pk])).content.decode()
    assert "Versions not read yet" in page
