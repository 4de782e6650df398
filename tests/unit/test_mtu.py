"""MTUs: a VM NIC's own <mtu>, and the migration pre-check that warns of a lower-MTU link.

The destination is libvirt's test driver with a host file of ours: a bridge and a
network at 1400 (as a bridged VPN overlay leaves them), and ones at 1500.
"""

from __future__ import annotations

from pathlib import Path

from django.test import Client
from django.urls import reverse

from jobs.context import JobContext
from jobs.models import Job
from nodes.hypervisor import migration_prep as prep
from nodes.hypervisor.xml import parse_domain_devices
from tests.support.factories import make_node, make_vm
from vms.choices import JobKind
from vms.services.migration.prechecks import warn_nic_mtus


def write_dest(path: Path) -> str:
    path.write_text(
        """<node>
  <cpu><mhz>2000</mhz><model>i686</model><active>2</active><nodes>1</nodes>
  <sockets>1</sockets><cores>2</cores><threads>1</threads></cpu>
  <memory>4194304</memory>
  <network><name>lan</name><uuid>5f2c6a7e-2222-4a2b-9c3d-000000000001</uuid>
    <bridge name='virbr9'/></network>
  <network><name>overlay</name><uuid>5f2c6a7e-2222-4a2b-9c3d-000000000002</uuid>
    <bridge name='virbr8'/><mtu size='1400'/></network>
  <interface type='bridge' name='labbr0'><start mode='onboot'/><mtu size='1400'/>
    <bridge></bridge></interface>
  <interface type='bridge' name='br0'><start mode='onboot'/><mtu size='1500'/>
    <bridge></bridge></interface>
</node>
""",
        encoding="utf-8",
    )
    return f"test://{path}"


def domain(*nics: str) -> str:
    return (
        "<domain type='qemu'><name>web1</name><memory>131072</memory>"
        f"<os><type>hvm</type></os><devices>{''.join(nics)}</devices></domain>"
    )


def nic(kind: str, source: str, mac: str, mtu: int | None = None) -> str:
    attr = "network" if kind == "network" else "bridge"
    own = f"<mtu size='{mtu}'/>" if mtu else ""
    return (
        f"<interface type='{kind}'><mac address='{mac}'/><source {attr}='{source}'/>"
        f"<model type='virtio'/>{own}</interface>"
    )


def test_a_nics_own_mtu_is_parsed() -> None:
    devices = parse_domain_devices(
        domain(nic("bridge", "labbr0", "52:54:00:00:00:01", 1400), nic("network", "lan", "m2"))
    )
    assert [(n.source, n.mtu) for n in devices.nics] == [("labbr0", 1400), ("lan", None)]
    assert devices.as_dict()["nics"][0]["mtu"] == 1400


def test_nics_larger_than_the_destinations_link_are_found(tmp_path: Path) -> None:
    dest = write_dest(tmp_path / "dest.xml")
    xml = domain(
        nic("bridge", "labbr0", "52:54:00:00:00:01"),  # 1500 > 1400: dropped frames
        nic("bridge", "labbr0", "52:54:00:00:00:02", 1400),  # already fits
        nic("bridge", "br0", "52:54:00:00:00:03"),  # 1500 on 1500
        nic("network", "overlay", "52:54:00:00:00:04", 9000),  # jumbo NIC on a 1400 net
        nic("network", "lan", "52:54:00:00:00:05"),  # MTU unknown there: not judged
        nic("bridge", "nosuchbr", "52:54:00:00:00:06"),  # not on the destination
        "<interface type='user'><mac address='52:54:00:00:00:07'/></interface>",
    )
    found = prep.nic_mtu_mismatches(dest, xml)
    assert found == [
        prep.NicMtuMismatch("52:54:00:00:00:01", "bridge", "labbr0", 1500, False, 1400),
        prep.NicMtuMismatch("52:54:00:00:00:04", "network", "overlay", 9000, True, 1400),
    ]
    assert prep.nic_mtu_mismatches(dest, domain()) == []


def test_the_migration_job_warns_but_goes_on(db: None, tmp_path: Path) -> None:
    dest = make_node(name="vpn1", uri=write_dest(tmp_path / "dest.xml"))
    job = Job.objects.create(kind=JobKind.MIGRATE, target_name="web1", requested_by="alice")
    ctx = JobContext(job)
    warn_nic_mtus(ctx, dest, domain(nic("bridge", "labbr0", "52:54:00:00:00:01")))
    job.refresh_from_db()
    assert (
        "WARNING: bridge labbr0 on vpn1 has MTU 1400, the VM's NIC 52:54:00:00:00:01 sends "
        "1500-byte frames (it has no <mtu>): large packets will be dropped; "
        "set <mtu size='1400'/> on that interface"
    ) in job.log
    before = job.log
    warn_nic_mtus(ctx, dest, domain(nic("bridge", "labbr0", "52:54:00:00:00:01", 1400)))
    job.refresh_from_db()
    assert job.log == before  # a NIC that fits: nothing to say


def test_the_vm_page_shows_each_nics_mtu(admin_client: Client) -> None:
    xml = domain(nic("bridge", "labbr0", "52:54:00:00:00:01", 1400), nic("network", "lan", "m2"))
    vm = make_vm(make_node(), xml_summary=parse_domain_devices(xml).as_dict())
    html = admin_client.get(reverse("vms:vm_detail", args=[vm.uuid])).content.decode()
    assert "<td>1400</td>" in html and "<td>default (1500)</td>" in html
    # A summary stored before NIC MTUs were parsed has no "mtu": the default is shown.
    old = {**vm.xml_summary, "nics": [{"mac": "m3", "type": "bridge", "source": "br0"}]}
    type(vm).objects.filter(pk=vm.pk).update(xml_summary=old)
    html = admin_client.get(reverse("vms:vm_detail", args=[vm.uuid])).content.decode()
    assert "<td>default (1500)</td>" in html
