"""The hypervisor adapter against libvirt's own test driver (no mocking of libvirt)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from nodes.hypervisor import HypervisorError, list_domains, probe_host
from nodes.hypervisor import connection as conn_module
from nodes.hypervisor.states import VMState
from nodes.hypervisor.xml import parse_domain_xml
from tests.support.nodexml import RUNSTATE_PAUSED, RUNSTATE_SHUTOFF, FakeDomain


def test_list_domains_reports_named_states_and_consoles(node_xml: Callable[..., str]) -> None:
    uri = node_xml(
        [
            FakeDomain(
                "web",
                "11111111-1111-1111-1111-111111111111",
                vcpus=2,
                memory_mib=2048,
                vnc_port=5901,
            ),
            FakeDomain("db", "22222222-2222-2222-2222-222222222222", runstate=RUNSTATE_SHUTOFF),
            FakeDomain("batch", "33333333-3333-3333-3333-333333333333", runstate=RUNSTATE_PAUSED),
        ]
    )
    by_name = {d.name: d for d in list_domains(uri)}
    assert by_name["web"].state is VMState.RUNNING
    assert (by_name["web"].vcpus, by_name["web"].memory_mib) == (2, 2048)
    assert (by_name["web"].vnc_port, by_name["web"].vnc_listen) == (5901, "0.0.0.0")
    assert by_name["db"].state is VMState.SHUTOFF
    assert by_name["db"].vnc_port is None
    assert by_name["batch"].state is VMState.PAUSED
    assert all(d.persistent for d in by_name.values())


def test_many_domains_fixture(node_xml: Callable[..., str]) -> None:
    domains = list_domains(node_xml(300))
    assert len(domains) == 300
    assert sum(d.state is VMState.SHUTOFF for d in domains) == 100
    assert len({d.uuid for d in domains}) == 300


def test_connection_is_reused_and_reopened_after_close(node_xml: Callable[..., str]) -> None:
    uri = node_xml(2)
    with conn_module.connection_for(uri) as first:
        pass
    with conn_module.connection_for(uri) as second:
        assert second is first
    first.close()  # the connection dies under us, as when a host reboots
    with conn_module.connection_for(uri) as third:
        assert third is not first
        assert len(third.listAllDomains(0)) == 2


def test_libvirt_errors_become_ours(node_xml: Callable[..., str]) -> None:
    uri = node_xml(1)
    with pytest.raises(HypervisorError) as info, conn_module.connection_for(uri) as conn:
        conn.lookupByName("no-such-domain")
    assert "Domain not found" in info.value.message
    assert info.value.uri == uri


def test_missing_test_file_is_a_clear_error() -> None:
    with pytest.raises(HypervisorError) as info:
        list_domains("test:///nonexistent/dir/node.xml")
    assert "test:///nonexistent/dir/node.xml" in str(info.value)


def test_unreachable_ssh_host_fails_fast() -> None:
    # Port 9 on loopback: nothing listens, so the TCP probe is refused at once.
    started = time.monotonic()
    with pytest.raises(HypervisorError) as info:
        list_domains("qemu+ssh://root@127.0.0.1:9/system")
    assert time.monotonic() - started < 3
    assert info.value.retryable
    assert "unreachable" in info.value.message


def test_probe_host_on_test_driver(node_xml: Callable[..., str]) -> None:
    report = probe_host(node_xml(1))
    assert report.driver == "TEST"
    assert report.cpus == 16
    assert [p.name for p in report.pools] == ["default"]
    assert report.pools[0].path == "/var/lib/libvirt/images"
    assert not report.kvm_usable
    assert report.virt_type == "qemu"


def test_parse_domain_xml_units_and_listen_element() -> None:
    summary = parse_domain_xml(
        """<domain><memory unit='GiB'>2</memory><currentMemory unit='MiB'>1024</currentMemory>
        <vcpu current='2'>4</vcpu><devices><graphics type='vnc' port='5905' autoport='no'>
        <listen type='address' address='198.51.100.11'/></graphics></devices></domain>"""
    )
    assert (summary.memory_mib, summary.current_memory_mib, summary.vcpus) == (2048, 1024, 2)
    assert summary.vnc is not None
    assert (summary.vnc.port, summary.vnc.listen) == (5905, "198.51.100.11")
