"""virt-install's argument list: built as a list, password masked, one value per element."""

from __future__ import annotations

import subprocess
from unittest import mock

import pytest

from nodes.hypervisor import HypervisorError, virtinstall
from nodes.hypervisor.virtinstall import CreateSpec, build_argv, masked_argv, run_virt_install

URI = "qemu+ssh://root@198.51.100.11/system"


def spec(**overrides: object) -> CreateSpec:
    values: dict[str, object] = {
        "name": "web1",
        "uuid": "0b5d3a8e-1c1e-4f5e-9a43-6a8e1f0c2b7d",
        "virt_type": "kvm",
        "vcpus": 2,
        "memory_mib": 2048,
        "os_variant": "linux2022",
        "media": "iso",
        "disk_pool": "default",
        "disk_gib": 20,
        "iso_path": "/srv/isos/debian 12.iso",
        "network": "lan",
        "vnc_listen": "198.51.100.11",
        "vnc_password": "s3cretPW",
        "vnc_start_password": "thr0wAway",
    }
    values.update(overrides)
    return CreateSpec(**values)  # type: ignore[arg-type]


def test_iso_install_argv() -> None:
    argv = build_argv(spec(), URI)
    assert argv[:3] == ["virt-install", "--connect", URI]
    pairs = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert pairs["--name"] == "web1" and pairs["--virt-type"] == "kvm"
    assert pairs["--vcpus"] == "2" and pairs["--memory"] == "2048"
    assert pairs["--osinfo"] == "linux2022"
    # A path with a space stays one argument: no shell ever sees it.
    assert argv[argv.index("--cdrom") + 1] == "/srv/isos/debian 12.iso"
    assert "pool=default,size=20,format=qcow2,bus=virtio" in argv
    assert "network=lan,model=virtio" in argv
    # The real password is on no command line (ps shows it to every local user):
    # virt-install gets a one-time password that expired long ago.
    assert "vnc,listen=198.51.100.11,password=thr0wAway,passwordValidTo=2000-01-01T00:00:00" in argv
    assert not any("s3cretPW" in arg for arg in argv)
    assert argv[-1] == "--noautoconsole"
    assert spec().new_volume_name == "web1.qcow2"


def test_import_pxe_bridge_port_and_raw() -> None:
    argv = build_argv(spec(media="import", import_volume="default/base.qcow2", network=""), URI)
    assert argv[argv.index("--import") + 1 : argv.index("--import") + 3] == [
        "--disk",
        "vol=default/base.qcow2,bus=virtio",
    ]
    assert "--network" in argv and "none" in argv and "--cdrom" not in argv
    assert spec(media="import").new_volume_name == ""
    argv = build_argv(
        spec(media="pxe", network="", bridge="br0", vnc_port=5905, disk_format="raw"), URI
    )
    assert "--pxe" in argv and "bridge=br0,model=virtio" in argv
    assert "pool=default,size=20,format=raw,bus=virtio" in argv
    assert (
        "vnc,listen=198.51.100.11,port=5905,password=thr0wAway,passwordValidTo=2000-01-01T00:00:00"
        in argv
    )
    assert spec(disk_format="raw").new_volume_name == "web1.img"
    with pytest.raises(ValueError):
        build_argv(spec(media="floppy"), URI)


def test_nic_mtu_is_a_suboption_of_the_one_network_argument() -> None:
    argv = build_argv(spec(network="", bridge="labbr0", nic_mtu=1400), URI)
    assert argv[argv.index("--network") + 1] == "bridge=labbr0,model=virtio,mtu.size=1400"
    assert argv.count("--network") == 1
    argv = build_argv(spec(network="overlay", nic_mtu=1400), URI)
    assert argv[argv.index("--network") + 1] == "network=overlay,model=virtio,mtu.size=1400"
    assert not any("mtu" in a for a in build_argv(spec(), URI))  # no MTU: virt-install's default
    assert "none" in build_argv(spec(network="", nic_mtu=1400), URI)  # no NIC, no MTU


def test_password_is_masked() -> None:
    argv = masked_argv(build_argv(spec(), URI), "s3cretPW", "thr0wAway")
    assert not any("s3cretPW" in a or "thr0wAway" in a for a in argv)
    assert "vnc,listen=198.51.100.11,password=********,passwordValidTo=2000-01-01T00:00:00" in argv


def test_test_driver_nodes_get_the_test_domain_type() -> None:
    assert virtinstall.virt_type_for("test:///default", "kvm") == "test"
    assert virtinstall.virt_type_for(URI, "qemu") == "qemu"


def test_os_variants_come_from_virt_install() -> None:
    variants = virtinstall.os_variants()
    assert {"generic", "linux2022"} <= variants and len(variants) > 100


def test_the_test_driver_has_no_vnc_server_and_gets_the_password_at_define_time() -> None:
    argv = build_argv(spec(virt_type="test"), "test:///default")
    assert "vnc,listen=198.51.100.11,password=s3cretPW" in argv
    assert spec(virt_type="test").sets_password_later is False


def test_failure_carries_virt_installs_error_with_the_password_masked() -> None:
    failed = subprocess.CompletedProcess(
        [], 1, stdout="Starting install...\n", stderr="ERROR    bad password=s3cretPW\n"
    )
    with mock.patch.object(virtinstall, "run_bound", autospec=True, return_value=failed):
        with pytest.raises(HypervisorError) as info:
            run_virt_install(spec(), "test:///default")
    assert info.value.message == (
        "test:///default: virt-install failed: ERROR    bad password=********"
    )


def test_timeout_is_bounded_and_retryable() -> None:
    with mock.patch.object(
        virtinstall,
        "run_bound",
        autospec=True,
        side_effect=subprocess.TimeoutExpired("virt-install", 5),
    ) as run:
        with pytest.raises(HypervisorError) as info:
            run_virt_install(spec(), "test:///default", timeout=5)
    assert info.value.retryable and "within 5 s" in info.value.message
    assert run.call_args.kwargs["timeout"] == 5
    assert isinstance(run.call_args.args[0], list)
