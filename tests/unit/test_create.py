"""Create VM: validation rules, the job on libvirt's test driver (real virt-install), UI, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jobs.choices import JobStatus
from jobs.models import Job
from jobs.runner import execute, submit
from nodes.hypervisor import HypervisorError, collect_facts, virtinstall
from nodes.hypervisor import networks as hv_networks
from nodes.hypervisor import storage as hv_storage
from nodes.hypervisor.connection import connection_for
from nodes.models import Node
from tests.support.factories import actor, make_node, make_vm
from vms import vncsecret
from vms.choices import JobKind
from vms.forms.create import CreateVMForm, create_form
from vms.models import VirtualMachine
from vms.services import create, inventory
from vms.services.create import submit_create, vnc_listen_address

GIB = 1024**3


def write_create_node(path: Path, *, cpus: int = 4, memory_mib: int = 8192) -> str:
    """A test-driver host with a default pool (one qcow2), an ISO pool, networks and bridges.

    ``overlay`` and ``vpnbr0`` have MTU 1400, as a bridged VPN overlay leaves them.
    """
    path.write_text(
        f"""<node>
  <cpu><mhz>2000</mhz><model>i686</model><active>{cpus}</active><nodes>1</nodes>
  <sockets>1</sockets><cores>{cpus}</cores><threads>1</threads></cpu>
  <memory>{memory_mib * 1024}</memory>
  <network><name>lan</name><uuid>5f2c6a7e-1111-4a2b-9c3d-000000000001</uuid>
    <bridge name='virbr9'/><forward mode='nat'/>
    <ip address='198.18.0.1' netmask='255.255.255.0'/></network>
  <network><name>overlay</name><uuid>5f2c6a7e-1111-4a2b-9c3d-000000000004</uuid>
    <bridge name='virbr8'/><mtu size='1400'/></network>
  <interface type='bridge' name='vpnbr0'><start mode='onboot'/><mtu size='1400'/>
    <bridge></bridge></interface>
  <interface type='bridge' name='br0'><start mode='onboot'/><mtu size='1500'/>
    <bridge><interface type='ethernet' name='eth0'><mac address='aa:bb:cc:dd:ee:ff'/></interface>
    </bridge></interface>
  <pool type='dir'>
    <name>default</name><uuid>5f2c6a7e-1111-4a2b-9c3d-000000000002</uuid>
    <capacity unit='GiB'>100</capacity><allocation unit='GiB'>10</allocation>
    <available unit='GiB'>90</available>
    <target><path>/var/lib/libvirt/images</path></target>
    <volume type='file'><name>base.qcow2</name><key>/var/lib/libvirt/images/base.qcow2</key>
      <capacity unit='GiB'>2</capacity><allocation unit='GiB'>1</allocation>
      <target><path>/var/lib/libvirt/images/base.qcow2</path><format type='qcow2'/></target>
    </volume>
  </pool>
  <pool type='dir'>
    <name>isos</name><uuid>5f2c6a7e-1111-4a2b-9c3d-000000000003</uuid>
    <capacity unit='GiB'>10</capacity><allocation unit='GiB'>1</allocation>
    <available unit='GiB'>9</available>
    <target><path>/srv/isos</path></target>
    <volume type='file'><name>debian-12.iso</name><key>/srv/isos/debian-12.iso</key>
      <capacity unit='MiB'>600</capacity><allocation unit='MiB'>600</allocation>
      <target><path>/srv/isos/debian-12.iso</path><format type='iso'/></target></volume>
  </pool>
</node>
""",
        encoding="utf-8",
    )
    return f"test://{path}"


@pytest.fixture
def node(db: None, tmp_path: Path) -> Node:
    """An online node whose facts were read from the test driver."""
    node = make_node(name="alpha", uri=write_create_node(tmp_path / "alpha.xml"))
    assert inventory.refresh_node(node).ok
    node.refresh_from_db()
    return node


def request(node: Node, **overrides: Any) -> CreateVMForm:
    values: dict[str, Any] = {
        "node": node,
        "name": "web1",
        "vcpus": 2,
        "memory_mib": 1024,
        "disk_gib": 10,
        "media": "iso",
        "iso": "isos/debian-12.iso",
        "network": "lan",
    }
    values.update(overrides)
    return create_form(**values)


def refused(req: CreateVMForm) -> dict[str, list[str]]:
    """The per-field messages of a refused request; asserts nothing was queued."""
    with pytest.raises(ValidationError) as info:
        submit_create(req, actor=actor("alice"))
    assert not Job.objects.exists()
    return info.value.message_dict


# --- facts -------------------------------------------------------------------------


def test_facts_list_volumes_isos_networks_and_bridges(node: Node) -> None:
    facts = node.facts
    assert [v["name"] for v in facts["volumes"]["default"]] == ["base.qcow2"]
    assert [(i["pool"], i["name"]) for i in facts["isos"]] == [("isos", "debian-12.iso")]
    assert facts["networks"] == [
        {"name": "lan", "active": True, "bridge": "virbr9", "mtu": None},
        {"name": "overlay", "active": True, "bridge": "virbr8", "mtu": 1400},
    ]
    assert facts["bridges"] == ["br0", "vpnbr0"]
    assert facts["bridge_mtus"] == {"br0": 1500, "vpnbr0": 1400}
    json.dumps(collect_facts(node.uri))  # JSON-safe


def test_facts_of_libvirts_default_test_host() -> None:
    """test:///default has one network without <mtu> and no bridge (eth1 is ethernet)."""
    facts = collect_facts("test:///default")
    assert facts["networks"] == [
        {"name": "default", "active": True, "bridge": "virbr0", "mtu": None}
    ]
    assert facts["bridges"] == [] and facts["bridge_mtus"] == {}


def test_a_network_without_mtu_has_its_bridges_mtu(tmp_path: Path) -> None:
    uri = write_create_node(tmp_path / "n.xml")
    text = (tmp_path / "n.xml").read_text()
    (tmp_path / "n.xml").write_text(
        text.replace("<pool type='dir'>", "<interface type='bridge' name='virbr9'>"
        "<mtu size='1450'/><bridge></bridge></interface><pool type='dir'>", 1)
    )  # fmt: skip
    facts = collect_facts(uri)
    assert facts["networks"][0] == {"name": "lan", "active": True, "bridge": "virbr9", "mtu": 1450}
    assert "virbr9" not in facts["bridges"]  # the network's own bridge is offered as the network
    mtus = hv_networks.link_mtus(uri)
    assert mtus.of("network", "lan") == 1450 and mtus.of("bridge", "virbr9") == 1450
    assert mtus.of("bridge", "vpnbr0") == 1400 and mtus.of("bridge", "nope") is None


def test_facts_stored_before_mtus_were_read_still_work(node: Node) -> None:
    """Old facts: ``bridges`` a list of names, no ``bridge_mtus``, networks without mtu."""
    old = {
        **node.facts,
        "networks": [{"name": "lan", "active": True, "bridge": "virbr9"}],
        "bridges": ["br0", "vpnbr0"],
    }
    del old["bridge_mtus"]
    Node.objects.filter(pk=node.pk).update(facts=old)
    node.refresh_from_db()
    opts = create.NodeOptions.of(node)
    assert opts.bridges == ["br0", "vpnbr0"] and opts.nic_mtu(bridge="vpnbr0") is None
    job = submit_create(request(node, network="", bridge="vpnbr0"), actor=actor("alice"))
    assert job.params["bridge"] == "vpnbr0"


# --- validation --------------------------------------------------------------------


def test_valid_request_queues_a_job_without_secrets(node: Node) -> None:
    job = submit_create(request(node), actor=actor("alice"))
    assert (job.kind, job.status, job.target_name, job.node) == (
        JobKind.CREATE,
        JobStatus.QUEUED,
        "web1",
        node,
    )
    assert job.params["iso_pool"] == "isos" and job.params["iso_volume"] == "debian-12.iso"
    assert job.params["os_variant"] in {"linux2022", "generic"}
    assert job.params["pool"] == "default" and job.params["disk_format"] == "qcow2"
    assert "password" not in json.dumps(job.params)


@pytest.mark.parametrize(
    "name",
    [
        "a;reboot",
        "$(reboot)",
        "`id`",
        "it's",
        'say"hi',
        "two words",
        "../etc",
        "a/../b",
        "vm\u0430",  # Cyrillic a, looks like Latin a
        "\uff56m1",  # fullwidth v
        "x" * 65,
        "",
        "-leading-dash",
    ],
)
def test_bad_vm_names_are_refused(node: Node, name: str) -> None:
    assert "name" in refused(request(node, name=name))


def test_name_clash_on_any_node_is_refused(node: Node) -> None:
    other = make_node(name="beta")
    make_vm(other, name="Web1")
    messages = refused(request(node))["name"]
    assert "already exists on node beta" in messages[0]


def test_vanished_vm_name_may_be_reused(node: Node) -> None:
    make_vm(node, name="web1", vanished_at=timezone.now())
    assert submit_create(request(node), actor=actor("alice")).pk


def test_active_create_job_of_that_name_is_refused(node: Node) -> None:
    submit(JobKind.CREATE, target_name="web1", requested_by="bob", node=node)
    with pytest.raises(ValidationError) as info:
        submit_create(request(node), actor=actor("alice"))
    assert "already being created" in info.value.message_dict["name"][0]
    assert Job.objects.count() == 1


@pytest.mark.parametrize("field", ["vcpus", "memory_mib", "disk_gib"])
@pytest.mark.parametrize("value", [0, -1, "abc", "1.5", "", None, "1e3"])
def test_sizes_must_be_positive_whole_numbers(node: Node, field: str, value: Any) -> None:
    assert field in refused(request(node, **{field: value}))


@pytest.mark.parametrize(
    ("field", "value", "limit"),
    [("vcpus", 5, "(4)"), ("memory_mib", 10**6, "MiB"), ("disk_gib", 100, "(99)")],
)
def test_sizes_larger_than_the_node_has_are_refused(
    node: Node, field: str, value: int, limit: str
) -> None:
    message = refused(request(node, **{field: value}))[field][0]
    assert "more than the node has" in message and limit in message


def test_flavor_fills_sizes_and_explicit_values_win(node: Node) -> None:
    params = request(node, vcpus=None, memory_mib="", disk_gib=None, flavor="tiny").job_params()
    assert (params["vcpus"], params["memory_mib"], params["disk_gib"]) == (1, 512, 5)
    params = request(node, vcpus=3, memory_mib=None, disk_gib=None, flavor="tiny").job_params()
    assert params["vcpus"] == 3
    assert "flavor" in refused(request(node, flavor="huge"))


@pytest.mark.parametrize(
    "iso",
    [
        "../../etc/passwd",
        "isos/../../etc/shadow",
        "/srv/isos/debian-12.iso",
        "isos/missing.iso",
        "default/base.qcow2",
        "isos/debian-12.iso/",
        "",
    ],
)
def test_iso_must_be_listed_in_a_pool(node: Node, iso: str) -> None:
    assert "iso" in refused(request(node, iso=iso))


def test_iso_without_pool_is_found_when_one_pool_lists_it(node: Node) -> None:
    assert request(node, iso="debian-12.iso").job_params()["iso_pool"] == "isos"


def test_import_volume_must_be_listed_and_not_an_iso(node: Node) -> None:
    params = request(node, media="import", import_volume="base.qcow2", disk_gib=None).job_params()
    assert (params["import_pool"], params["import_volume"]) == ("default", "base.qcow2")
    for bad in ("isos/debian-12.iso", "default/../base.qcow2", "default/nope.qcow2"):
        assert "import_volume" in refused(request(node, media="import", import_volume=bad))


def test_pool_and_disk_format_are_checked(node: Node) -> None:
    assert "pool" in refused(request(node, pool="nope"))
    assert "disk_format" in refused(request(node, disk_format="vmdk"))


def test_existing_volume_of_the_new_disk_name_is_refused(node: Node) -> None:
    assert "already has a volume 'base.qcow2'" in refused(request(node, name="base"))["name"][0]


def test_network_or_bridge_must_exist_on_the_node(node: Node) -> None:
    assert "network" in refused(request(node, network="wan"))
    assert "network" in refused(request(node, network="", bridge="br9"))
    assert "network" in refused(request(node, network="lan", bridge="br0"))
    assert "network" in refused(request(node, network="", media="pxe"))
    assert request(node, network="", bridge="br0").job_params()["bridge"] == "br0"


def test_media_and_os_variant_are_checked(node: Node) -> None:
    assert "media" in refused(request(node, media="floppy"))
    assert "os_variant" in refused(request(node, os_variant="windows95; rm -rf"))
    assert request(node, os_variant="debian11").job_params()["os_variant"] == "debian11"


@pytest.mark.parametrize("port", [5899, 65536, 0, -5900, "abc", "59OO"])
def test_vnc_port_outside_range_is_refused(node: Node, port: Any) -> None:
    assert "vnc_port" in refused(request(node, vnc_port=port))


def test_vnc_port_in_use_on_that_node_is_refused(node: Node) -> None:
    make_vm(node, name="other", vnc_port=5905)
    assert "in use by other" in refused(request(node, vnc_port=5905))["vnc_port"][0]
    # The same port on another node is no conflict.
    make_vm(make_node(name="beta"), name="far", vnc_port=5906)
    assert request(node, vnc_port="5906").job_params()["vnc_port"] == 5906


def test_offline_disabled_or_unread_nodes_are_refused(node: Node) -> None:
    Node.objects.filter(pk=node.pk).update(last_error="unreachable (no answer within 2.5 s)")
    node.refresh_from_db()
    assert "offline" in refused(request(node))["node"][0]
    Node.objects.filter(pk=node.pk).update(last_error="", enabled=False)
    node.refresh_from_db()
    assert "disabled" in refused(request(node))["node"][0]
    fresh = make_node(name="fresh", last_seen=timezone.now())
    assert "not been read" in refused(request(fresh))["node"][0]


def test_every_problem_is_reported_at_once(node: Node) -> None:
    errors = refused(request(node, name="a b", vcpus=0, iso="../x", vnc_port=1))
    assert {"name", "vcpus", "iso", "vnc_port"} <= set(errors)


# --- the job on the test driver (real virt-install against test:///) ------------------


def run_job(job: Job) -> Job:
    assert execute(job.pk) is not None
    job.refresh_from_db()
    return job


def test_create_job_runs_virt_install_and_records_the_vm(node: Node) -> None:
    job = run_job(submit_create(request(node, vnc_port=5910), actor=actor("alice")))
    assert job.status == JobStatus.SUCCEEDED, job.log
    vm = VirtualMachine.objects.get(name="web1")
    assert job.vm == vm and vm.node == node
    password = vncsecret.unseal(vm.vnc_password_sealed)
    assert len(password) == 8 and password not in vm.vnc_password_sealed
    for text in (job.log, job.command, job.error):
        assert password not in text
    assert job.command.startswith(f"virt-install --connect {node.uri} --name web1 --uuid {vm.uuid}")
    assert "--virt-type test" in job.command and "--cdrom /srv/isos/debian-12.iso" in job.command
    assert "vnc,listen=127.0.0.1,port=5910,password=********" in job.command
    assert "pool=default,size=10,format=qcow2" in job.command
    assert "virt-install: Creating domain" in job.log


def test_create_import_job_with_bridge(node: Node) -> None:
    req = request(
        node, media="import", import_volume="default/base.qcow2", network="", bridge="br0"
    )
    job = run_job(submit_create(req, actor=actor("alice")))
    assert job.status == JobStatus.SUCCEEDED, job.log
    assert "--import --disk vol=default/base.qcow2,bus=virtio" in job.command
    assert "--network bridge=br0,model=virtio" in job.command  # MTU 1500: nothing to set
    assert "mtu" not in job.command


@pytest.mark.parametrize(("kind", "name"), [("bridge", "vpnbr0"), ("network", "overlay")])
def test_a_nic_on_a_low_mtu_link_gets_that_mtu(node: Node, kind: str, name: str) -> None:
    req = request(node, **{"network": "", kind: name})
    job = run_job(submit_create(req, actor=actor("alice")))
    assert job.status == JobStatus.SUCCEEDED, job.log
    assert f"--network {kind}={name},model=virtio,mtu.size=1400" in job.command
    assert f"{kind} {name} on alpha has MTU 1400: the NIC gets mtu.size=1400" in job.log
    # virt-install (real, on its own test-driver connection) accepted the suboption;
    # tests/integration/test_create_real.py checks the domain XML on a real node.


def test_the_job_reads_the_mtu_live_not_from_the_facts(node: Node) -> None:
    """Facts say br0 is at 1500 (or are old); the node now says 1400: the job uses 1400."""
    real = hv_networks.link_mtus

    def lowered(uri: str) -> hv_networks.LinkMtus:
        mtus = real(uri)
        return hv_networks.LinkMtus(mtus.networks, {**mtus.bridges, "br0": 1400})

    with mock.patch.object(hv_networks, "link_mtus", autospec=True, side_effect=lowered):
        job = run_job(submit_create(request(node, network="", bridge="br0"), actor=actor("alice")))
    assert job.status == JobStatus.SUCCEEDED, job.log
    assert "--network bridge=br0,model=virtio,mtu.size=1400" in job.command


def test_node_that_changed_since_the_form_fails_the_job_and_creates_nothing(node: Node) -> None:
    facts = dict(node.facts)
    facts["isos"] = [*facts["isos"], {**facts["isos"][0], "name": "gone.iso"}]
    Node.objects.filter(pk=node.pk).update(facts=facts)
    node.refresh_from_db()
    job = run_job(submit_create(request(node, iso="isos/gone.iso"), actor=actor("alice")))
    assert job.status == JobStatus.FAILED
    assert "ISO isos/gone.iso is gone" in job.error and "Nothing was created" in job.error
    assert not job.command and not VirtualMachine.objects.exists()


def test_failed_virt_install_removes_the_volume_and_domain_it_left(node: Node) -> None:
    def half_create(spec: virtinstall.CreateSpec, node_uri: str, **_: object) -> str:
        # What a virt-install cut off midway leaves: its new volume and a defined domain.
        hv_storage.create_volume(node_uri, "default", spec.new_volume_name, GIB, "qcow2")
        with connection_for(node_uri) as conn:
            conn.defineXML(
                f"<domain type='test'><name>{spec.name}</name><uuid>{spec.uuid}</uuid>"
                "<memory>131072</memory><os><type>hvm</type></os></domain>"
            )
        raise HypervisorError(f"{node_uri}: virt-install failed: ERROR    connection lost")

    with mock.patch.object(virtinstall, "run_virt_install", autospec=True, side_effect=half_create):
        job = run_job(submit_create(request(node), actor=actor("alice")))
    assert job.status == JobStatus.FAILED
    assert "connection lost" in job.error
    assert "Removed what it had created: domain web1, volume default/web1.qcow2." in job.error
    assert hv_storage.find_volume(node.uri, "default", "web1.qcow2") is None
    assert not virtinstall.domain_exists(node.uri, name="web1")
    assert not VirtualMachine.objects.exists()


def test_cleanup_that_cannot_reach_the_node_says_what_to_remove(node: Node) -> None:
    def fail(*_: object, **__: object) -> str:
        raise HypervisorError("virt-install failed: ERROR    Cannot recv data")

    with (
        mock.patch.object(virtinstall, "run_virt_install", autospec=True, side_effect=fail),
        mock.patch.object(
            virtinstall,
            "remove_domain",
            autospec=True,
            side_effect=HypervisorError("node: unreachable"),
        ),
    ):
        job = run_job(submit_create(request(node), actor=actor("alice")))
    assert job.status == JobStatus.FAILED
    assert "remove by hand: domain web1 (UUID " in job.error


def test_job_uses_the_node_virt_type(node: Node) -> None:
    Node.objects.filter(pk=node.pk).update(virt_type="qemu")
    node.refresh_from_db()
    assert node.effective_virt_type == "qemu"
    # The test driver only runs type 'test'; real nodes get the pin or kvm.
    spec = create._spec(node, request(node).job_params(), "/srv/isos/debian-12.iso")
    assert spec.virt_type == "test"
    node.uri = "qemu+ssh://root@127.0.0.1/system"
    assert create._spec(node, request(node).job_params(), "").virt_type == "qemu"
    node.virt_type = "auto"
    node.facts = {**node.facts, "kvm_usable": True}
    assert create._spec(node, request(node).job_params(), "").virt_type == "kvm"
    assert create._spec(node, request(node).job_params(), "").vnc_listen == "127.0.0.1"


# --- web page ---------------------------------------------------------------------


def test_create_page_asks_for_the_node_first(admin_client: Client, node: Node) -> None:
    for query in ("", "?node=abc", "?node=999999"):
        html = admin_client.get(reverse("vms:vm_create") + query).content.decode()
        assert 'name="node"' in html and "alpha (online)" in html and 'name="vcpus"' not in html


def test_create_form_offers_only_what_the_node_has(admin_client: Client, node: Node) -> None:
    html = admin_client.get(reverse("vms:vm_create") + f"?node={node.pk}").content.decode()
    assert 'value="isos/debian-12.iso"' in html
    assert 'value="default/base.qcow2"' in html
    assert 'value="network:lan"' in html and 'value="bridge:br0"' in html
    assert "bridge vpnbr0 (MTU 1400: the NIC gets mtu.size=1400)" in html
    assert "libvirt network overlay (MTU 1400: the NIC gets mtu.size=1400)" in html
    assert "bridge br0 (MTU" not in html and "libvirt network lan (MTU" not in html
    assert 'value="isos/base.qcow2"' not in html
    assert "csrfmiddlewaretoken" in html


def form_data(**overrides: str) -> dict[str, str]:
    data = {
        "name": "web1",
        "flavor": "",
        "vcpus": "1",
        "memory_mib": "512",
        "disk_gib": "5",
        "disk_format": "qcow2",
        "pool": "default",
        "media": "iso",
        "iso": "isos/debian-12.iso",
        "import_volume": "",
        "network": "network:lan",
        "os_variant": "",
        "vnc_port": "",
    }
    data.update(overrides)
    return data


def test_post_queues_a_job_and_shows_it(admin_client: Client, node: Node) -> None:
    url = reverse("vms:vm_create") + f"?node={node.pk}"
    response = admin_client.post(url, form_data())
    job = Job.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("jobs:job_detail", args=[job.pk])
    assert job.requested_by == "alice" and job.params["network"] == "lan"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "bad name"}, "is not allowed"),
        ({"vcpus": "0"}, "must be at least 1"),
        ({"memory_mib": "999999999"}, "more than the node has"),
        ({"iso": "../../etc/passwd"}, "is not a volume in"),  # the CLI's and API's words
        ({"vnc_port": "80"}, "5900 to 65535"),
    ],
)
def test_bad_post_shows_the_error_and_changes_nothing(
    admin_client: Client, node: Node, overrides: dict[str, str], message: str
) -> None:
    url = reverse("vms:vm_create") + f"?node={node.pk}"
    response = admin_client.post(url, form_data(**overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Job.objects.exists()


def test_post_needs_csrf(node: Node) -> None:
    from django.contrib.auth import get_user_model

    client = Client(enforce_csrf_checks=True)
    client.force_login(get_user_model().objects.create_user("mallory"))
    response = client.post(reverse("vms:vm_create") + f"?node={node.pk}", form_data())
    assert response.status_code == 403 and not Job.objects.exists()


def test_vm_list_links_to_create(admin_client: Client, node: Node) -> None:
    assert reverse("vms:vm_create") in admin_client.get(reverse("vms:vm_list")).content.decode()


# --- manage.py createvm ------------------------------------------------------------------


def test_createvm_command_queues_and_runs(node: Node, capsys) -> None:
    call_command(
        "createvm",
        "alpha",
        "cli1",
        "--flavor",
        "tiny",
        "--iso",
        "isos/debian-12.iso",
        "--network",
        "lan",
        "--json",
    )
    out = json.loads(capsys.readouterr().out)
    assert (out["kind"], out["status"], out["target"]) == ("create", "queued", "cli1")
    job = run_job(Job.objects.get(pk=out["id"]))
    assert job.status == JobStatus.SUCCEEDED, job.log
    assert job.requested_by.startswith("cli")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["alpha", "a;b", "--vcpus", "1", "--memory", "512", "--disk-size", "1", "--pxe"], "name"),
        (["alpha", "ok", "--vcpus", "-2", "--memory", "512", "--disk-size", "1", "--pxe"], "vcpus"),
        (["alpha", "ok", "--flavor", "tiny", "--iso", "../../etc/passwd"], "iso"),
        (["alpha", "ok", "--flavor", "tiny", "--pxe", "--vnc-port", "70000"], "vnc_port"),
        (["nowhere", "ok", "--flavor", "tiny", "--pxe"], "no node named"),
    ],
)
def test_createvm_command_refuses_bad_input(node: Node, args: list[str], message: str) -> None:
    with pytest.raises(CommandError) as info:
        call_command("createvm", *args)
    assert message in str(info.value)
    assert not Job.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "uri",
    [
        "qemu+ssh://root@198.51.100.254:2222/system",  # a router's port forward
        "qemu+ssh://root@198.51.100.11/system",  # the node's own address
        "qemu+ssh://admin@node7.example/system",  # a name that may resolve elsewhere
    ],
)
def test_new_vms_listen_for_vnc_on_the_node_loopback_never_on_the_uri_host(uri: str) -> None:
    """The manager's URI host is how the manager reaches the node, not an address of it."""
    assert vnc_listen_address(make_node(name="n9", uri=uri)) == "127.0.0.1"
