"""Render a member's OpenVPN files from the templates in ``deploy/openvpn/``.

Every value that reaches a template was validated when the tunnel or member was
saved (names, CIDRs, addresses, bridge); ``string.Template.substitute`` fails on
a missing value instead of writing a half-filled config.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from string import Template

from nodes.validators import parse_node_uri
from vpn import paths
from vpn.choices import TunnelMode
from vpn.models import Tunnel, TunnelMember
from vpn.pki import NodeCredentials
from vpn.validators import parse_cidr


@dataclass(frozen=True)
class NodeFile:
    path: str
    content: str
    mode: int

    def __repr__(self) -> str:  # the content may hold keys: keep it out of logs and tracebacks
        return f"NodeFile({self.path!r}, mode={self.mode:o})"


def _template(name: str) -> Template:
    return Template((paths.TEMPLATES / name).read_text())


def server_endpoint(tunnel: Tunnel, server: TunnelMember) -> str:
    """What clients connect to: the explicit endpoint, else the server node's URI host."""
    return tunnel.server_endpoint or parse_node_uri(server.node.uri, resolve=False).host


def _bridge_lines(tunnel: Tunnel, member: TunnelMember) -> str:
    if tunnel.mode != TunnelMode.BRIDGED:
        return ""
    prefix = parse_cidr(tunnel.subnet).prefixlen
    args = f"{tunnel.bridge} {member.address}/{prefix} {tunnel.mtu}"
    return "\n".join(
        [
            "# Bridged overlay: the TAP device joins the VM bridge, which carries the address.",
            "script-security 2",
            "ifconfig-noexec",
            f'up "{paths.BRIDGE_SCRIPT} up {args}"',
            f'down "{paths.BRIDGE_SCRIPT} down {args}"',
        ]
    )


def _common(tunnel: Tunnel, member: TunnelMember, creds: NodeCredentials) -> dict[str, object]:
    network = parse_cidr(tunnel.subnet)
    return {
        "tunnel": tunnel.name,
        "mode": tunnel.mode,
        "node": member.node.name,
        "port": tunnel.port,
        "device": tunnel.device,
        "dev_type": "tap" if tunnel.mode == TunnelMode.BRIDGED else "tun",
        "address": member.address,
        "netmask": str(network.netmask),
        "mtu": tunnel.mtu,
        "bridge_lines": _bridge_lines(tunnel, member),
        "mgmt_port": paths.MGMT_PORT,
        "mgmt_file": paths.mgmt_file(tunnel.name),
        "log_file": paths.log_file(tunnel.name),
        "ca": creds.ca_pem,
        "cert": creds.cert_pem,
        "key": creds.key_pem,
        "tls_crypt": creds.tls_crypt,
    }


def _push_routes(tunnel: Tunnel) -> str:
    if not tunnel.manager_network:
        return ""
    network = ipaddress.ip_network(tunnel.manager_network)
    return f'push "route {network.network_address} {network.netmask}"'


def server_files(
    tunnel: Tunnel,
    member: TunnelMember,
    creds: NodeCredentials,
    clients: list[TunnelMember],
) -> list[NodeFile]:
    """The server's config, CRL, management password and one ccd file per client."""
    values = _common(tunnel, member, creds)
    values.update(
        push_routes=_push_routes(tunnel),
        ccd_dir=paths.ccd_dir(tunnel.name),
        crl_file=paths.crl_file(tunnel.name),
    )
    files = [
        NodeFile(paths.conf(tunnel.name), _template("server.conf.tmpl").substitute(values), 0o600),
        NodeFile(paths.crl_file(tunnel.name), creds.crl_pem, 0o644),
    ]
    ccd = _template("ccd.tmpl")
    netmask = values["netmask"]
    for client in clients:
        text = ccd.substitute(
            node=client.node.name, tunnel=tunnel.name, address=client.address, netmask=netmask
        )
        files.append(NodeFile(f"{paths.ccd_dir(tunnel.name)}/{client.node.name}", text, 0o644))
    return [*files, *_shared_files(tunnel, creds)]


def client_files(
    tunnel: Tunnel, member: TunnelMember, creds: NodeCredentials, server: TunnelMember
) -> list[NodeFile]:
    values = _common(tunnel, member, creds)
    values.update(endpoint=server_endpoint(tunnel, server), server_node=server.node.name)
    conf = _template("client.conf.tmpl").substitute(values)
    return [NodeFile(paths.conf(tunnel.name), conf, 0o600), *_shared_files(tunnel, creds)]


def _shared_files(tunnel: Tunnel, creds: NodeCredentials) -> list[NodeFile]:
    files = [NodeFile(paths.mgmt_file(tunnel.name), creds.mgmt_password + "\n", 0o600)]
    if tunnel.mode == TunnelMode.BRIDGED:
        script = (paths.TEMPLATES / "kvmmgr-bridge").read_text()
        files.append(NodeFile(paths.BRIDGE_SCRIPT, script, 0o700))
    return files
