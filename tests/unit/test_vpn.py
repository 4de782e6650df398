"""vpn app: validation, PKI files and modes, config rendering, management protocol."""

from __future__ import annotations

import socket
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from django.core.exceptions import ValidationError

from tests.support.factories import make_node
from vpn import mgmt, render, services
from vpn.choices import TunnelMode
from vpn.models import Tunnel, TunnelMember


@pytest.fixture(autouse=True)
def vpn_dir(tmp_path: Path, settings: object) -> Path:
    settings.KVMMGR_VPN_DIR = tmp_path / "vpn"  # type: ignore[attr-defined]
    return tmp_path / "vpn"


def _ssh_node(name: str, host: str):
    return make_node(name=name, uri=f"qemu+ssh://root@{host}/system")


@pytest.fixture
def two_nodes(db: None):
    return _ssh_node("node1", "198.51.100.11"), _ssh_node("node2", "198.18.0.12")


def test_tunnel_with_client_gets_fixed_addresses_and_0600_pki(two_nodes, vpn_dir: Path) -> None:
    server, client = two_nodes
    tunnel = services.create_tunnel(name="t1", subnet="100.64.0.0/24", server=server)
    member = services.add_client(tunnel, client)
    assert TunnelMember.objects.get(node=server).address == "100.64.0.1"
    assert member.address == "100.64.0.2"
    files = sorted(p.name for p in (vpn_dir / "t1").iterdir())
    assert files == [
        "ca.crt", "ca.key", "crl.pem", "node1.crt", "node1.key", "node1.mgmt",
        "node2.crt", "node2.key", "node2.mgmt", "tls-crypt.key",
    ]  # fmt: skip
    assert stat.S_IMODE((vpn_dir / "t1").stat().st_mode) == 0o700
    for path in (vpn_dir / "t1").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    ca = x509.load_pem_x509_certificate((vpn_dir / "t1" / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((vpn_dir / "t1" / "node2.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "node2"
    assert member.cert_serial == format(cert.serial_number, "x")


def test_renew_revokes_the_old_certificate(two_nodes, vpn_dir: Path) -> None:
    server, client = two_nodes
    tunnel = services.create_tunnel(name="t1", subnet="100.64.0.0/24", server=server)
    old = services.add_client(tunnel, client).cert_serial
    new = services.renew_certificate("node2").cert_serial
    assert new != old
    crl = x509.load_pem_x509_crl((vpn_dir / "t1" / "crl.pem").read_bytes())
    assert [format(r.serial_number, "x") for r in crl] == [old]


@pytest.mark.parametrize(
    ("subnet", "message"),
    [
        ("100.64.0.0/33", "not a valid network"),
        ("100.64.0.1/24", "not a valid network"),
        ("banana", "not a valid network"),
        ("198.51.100.0/24", "overlaps the manager's path to node node1"),
        ("198.18.0.0/16", "overlaps the manager's path to node node2"),
    ],
)
def test_bad_subnets_are_refused_and_nothing_is_saved(two_nodes, subnet, message) -> None:
    server, _ = two_nodes
    with pytest.raises(ValidationError, match=message):
        services.create_tunnel(name="t1", subnet=subnet, server=server)
    assert not TunnelMember.objects.exists()


def test_a_node_cannot_serve_two_tunnels(two_nodes) -> None:
    server, client = two_nodes
    services.create_tunnel(name="t1", subnet="100.64.0.0/24", server=server)
    with pytest.raises(ValidationError, match="already the server of tunnel t1"):
        services.create_tunnel(name="t2", subnet="100.64.1.0/24", server=server)
    with pytest.raises(ValidationError, match="overlaps tunnel t1"):
        services.create_tunnel(name="t3", subnet="100.64.0.0/25", server=client)


def test_unknown_node_and_non_member_have_clear_errors(two_nodes) -> None:
    with pytest.raises(ValidationError, match="no node named 'ghost'"):
        services.renew_certificate("ghost")
    with pytest.raises(ValidationError, match="node1 is in no tunnel"):
        services.renew_certificate("node1")


def test_bridged_needs_a_bridge_and_lowers_the_mtu(two_nodes) -> None:
    server, _ = two_nodes
    with pytest.raises(ValidationError, match="Bridge name"):
        services.create_tunnel(name="b1", subnet="100.64.0.0/24", server=server, mode="bridged")
    tunnel = services.create_tunnel(
        name="b1", subnet="100.64.0.0/24", server=server, mode=TunnelMode.BRIDGED, bridge="br0"
    )
    assert tunnel.mtu == 1400


def test_rendered_configs(two_nodes) -> None:
    server, client = two_nodes
    tunnel = services.create_tunnel(
        name="t1", subnet="100.64.0.0/24", server=server, manager_network="198.51.100.1/32"
    )
    member = services.add_client(tunnel, client)
    srv = TunnelMember.objects.get(node=server)
    srv_files = {f.path: f for f in services.node_files(srv)}
    conf = srv_files["/etc/openvpn/kvmmgr/t1.conf"]
    assert conf.mode == 0o600
    assert "dev kvpn-t1" in conf.content and "dev-type tun" in conf.content
    assert "ifconfig 100.64.0.1 255.255.255.0" in conf.content
    assert "management 127.0.0.1 7505 /etc/openvpn/kvmmgr/t1.mgmt" in conf.content
    assert 'push "route 198.51.100.1 255.255.255.255"' in conf.content
    assert "BEGIN PRIVATE KEY" in conf.content and "${" not in conf.content
    assert "PRIVATE KEY" not in repr(conf)  # never in logs or tracebacks
    ccd = srv_files["/etc/openvpn/kvmmgr/t1-ccd/node2"].content
    assert "ifconfig-push 100.64.0.2 255.255.255.0" in ccd
    client_conf = services.node_files(member)[0].content
    assert "remote 198.51.100.11 1194" in client_conf
    assert "verify-x509-name node1 name" in client_conf
    # The bulk-transfer lines bench/vpn_tuning.py measured (docs/benchmarks.md), on both
    # ends: 4 MiB UDP buffers (without them 0.94x on a bare link), AES-256-GCM first
    # (ChaCha20-Poly1305 0.79x where the CPUs have AES-NI), a 1500 tun MTU with mssfix
    # (no underlay fragments; 1400 gained nothing), no compression (it is opt-out in
    # OpenVPN 2.5+ for VORACLE, and over a link it gained 1.3x only on uncompressed data).
    for text in (conf.content, client_conf):
        lines = text.splitlines()
        assert "sndbuf 4194304" in lines and "rcvbuf 4194304" in lines
        assert "data-ciphers AES-256-GCM:CHACHA20-POLY1305" in lines
        assert "tun-mtu 1500" in lines and "mssfix" in lines
        assert not any(
            line.startswith(("compress", "comp-lzo", "allow-compression")) for line in lines
        )


def test_bridged_config_joins_the_vm_bridge(two_nodes) -> None:
    server, client = two_nodes
    tunnel = services.create_tunnel(
        name="b1", subnet="100.64.0.0/24", server=server, mode="bridged", bridge="br0"
    )
    member = services.add_client(tunnel, client)
    files = {f.path: f for f in services.node_files(member)}
    conf = files["/etc/openvpn/kvmmgr/b1.conf"].content
    assert "dev-type tap" in conf and "tun-mtu 1400" in conf and "ifconfig-noexec" in conf
    assert 'up "/etc/openvpn/kvmmgr/kvmmgr-bridge up br0 100.64.0.2/24 1400"' in conf
    assert files["/etc/openvpn/kvmmgr/kvmmgr-bridge"].mode == 0o700


def test_vpn_down_reason_for_nodes_behind_a_tunnel(two_nodes) -> None:
    server, _ = two_nodes
    services.create_tunnel(name="t1", subnet="100.64.0.0/24", server=server)
    inner = _ssh_node("node3", "100.64.0.3")
    assert services.unreachable_reason(inner, "timeout").startswith(
        "VPN down: node3 is reached through tunnel t1 at 100.64.0.3"
    )
    assert services.unreachable_reason(server, "timeout") == "timeout"


def _fake_management(password: str, replies: dict[str, str]) -> socket.socket:
    ours, theirs = socket.socketpair()

    def serve() -> None:
        theirs.sendall(b"ENTER PASSWORD:")
        reader = theirs.makefile("rb")
        if reader.readline().strip().decode() != password:
            theirs.sendall(b"ERROR: bad password\r\n")
            return
        theirs.sendall(b"SUCCESS: password is correct\r\n>INFO:OpenVPN Management Interface\r\n")
        for line in reader:
            command = line.strip().decode()
            if command == "quit":
                break
            theirs.sendall(replies[command].encode())
        theirs.close()

    threading.Thread(target=serve, daemon=True).start()
    ours.settimeout(5)
    return ours


SERVER_STATUS = (
    "TITLE\tOpenVPN 2.6.14\r\n"
    "HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address"
    "\tBytes Received\tBytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\r\n"
    "CLIENT_LIST\tnode2\t198.51.100.254:41000\t100.64.0.2\t\t1000\t2000\t2026-01-01 00:00:00"
    "\t1767225600\tUNDEF\r\n"
    "GLOBAL_STATS\tMax bcast/mcast queue length\t0\r\nEND\r\n"
)


STATE_LINE = "1767225600,CONNECTED,SUCCESS,100.64.0.1,,,,\r\nEND\r\n"


def test_management_status_of_a_server() -> None:
    sock = _fake_management(
        "s3cret",
        {
            "state": "1767225600,CONNECTED,SUCCESS,100.64.0.1,,,,\r\nEND\r\n",
            "status 3": SERVER_STATUS,
        },
    )
    status = mgmt.read_status(sock, "s3cret")
    assert status.state == "CONNECTED" and status.local_address == "100.64.0.1"
    (peer,) = status.peers
    assert (peer.name, peer.real_address, peer.tunnel_address) == (
        "node2", "198.51.100.254:41000", "100.64.0.2",
    )  # fmt: skip
    assert (peer.bytes_in, peer.bytes_out) == (1000, 2000)
    assert peer.connected_since is not None and peer.connected_since.year == 2026


def test_management_wrong_password() -> None:
    sock = _fake_management("right", {})
    with pytest.raises(mgmt.MgmtError, match="refused the password"):
        mgmt.read_status(sock, "wrong")


def test_render_substitutes_every_placeholder(two_nodes) -> None:
    server, client = two_nodes
    tunnel = services.create_tunnel(name="t1", subnet="100.64.0.0/24", server=server)
    services.add_client(tunnel, client)
    for member in TunnelMember.objects.all():
        for node_file in services.node_files(member):
            assert "$" not in node_file.content.replace("$@", ""), node_file.path
    assert render.server_endpoint(tunnel, TunnelMember.objects.get(node=server)) == "198.51.100.11"


def test_a_port_forwarded_server_needs_an_explicit_endpoint(db: None) -> None:
    # The manager reaches the server through a router's port forward: the URI's
    # host is the router, not the node, so it cannot be the clients' endpoint.
    server = _ssh_node("srv", "198.51.100.254:2222")
    with pytest.raises(ValidationError, match=r"through 198\.51\.100\.254:2222, a port forward"):
        services.create_tunnel(name="t1", subnet="100.64.0.0/24", server=server)
    assert not Tunnel.objects.exists()
    tunnel = services.create_tunnel(
        name="t1", subnet="100.64.0.0/24", server=server, server_endpoint="198.51.100.254"
    )
    assert render.server_endpoint(tunnel, TunnelMember.objects.get(node=server)) == (
        "198.51.100.254"
    )
    # Port 22 written out is the node's own sshd: its host stays the default endpoint.
    plain = _ssh_node("srv2", "198.51.100.13:22")
    tunnel = services.create_tunnel(name="t2", subnet="100.64.1.0/24", server=plain)
    assert render.server_endpoint(tunnel, TunnelMember.objects.get(node=plain)) == "198.51.100.13"


def test_vpn_page_shows_members_states_and_peers(two_nodes, admin_client) -> None:
    server, client = two_nodes
    tunnel = services.create_tunnel(name="t1", subnet="100.64.0.0/24", server=server)
    services.add_client(tunnel, client)
    TunnelMember.objects.filter(node=server).update(
        state="up",
        peers=[
            {
                "name": "node2",
                "tunnel_address": "100.64.0.2",
                "real_address": "198.51.100.254:41000",
            }
        ],
    )
    page = admin_client.get("/vpn/").content.decode()
    assert "vpn-up" in page and "node2 · 100.64.0.2 · via 198.51.100.254:41000" in page
    assert "PRIVATE KEY" not in page


@pytest.mark.django_db
def test_vpn_actions_need_the_admin_role(viewer_client, admin_client) -> None:
    from django.urls import reverse

    from kvmmgr.models import AuditEntry
    from tests.support.factories import make_node
    from vpn.models import Tunnel, TunnelMember

    node = make_node(name="srv", uri="qemu+ssh://root@127.0.0.1:2222/system")
    tunnel = Tunnel.objects.create(name="t1", subnet="100.64.0.0/24")
    member = TunnelMember.objects.create(
        tunnel=tunnel, node=node, role="server", address="100.64.0.1"
    )
    url = reverse("vpn:member_action", args=[member.pk, "stop"])
    assert viewer_client.post(url).status_code == 403
    assert "Stop</button>" not in viewer_client.get(reverse("vpn:tunnel_list")).content.decode()
    assert admin_client.post(url).status_code == 302
    entries = AuditEntry.objects.filter(action="vpn.stop", target="srv")
    assert sorted(e.result for e in entries) == ["denied", "ok"]
