"""The NAT lab: a router namespace and nodes in another subnet behind it (issue 5).

Topology (added to the regular lab; nothing else in the root namespace changes)::

    root netns (manager) kvmlab0 198.51.100.1/24
       |  routes added while the NAT lab exists (they vanish with kvmlab0):
       |    198.18.0.0/24 via 198.51.100.254   (manager's ssh to NATed nodes)
       |    100.64.0.0/24 via the VPN server     (management through the tunnel)
       |-- kvl-vpn1   <-> [kvmlab-vpn1]   eth0 198.51.100.13   OpenVPN server
       `-- kvl-router <-> [kvmlab-router] eth0 198.51.100.254
                            lan0 198.18.0.1/24 (bridge)  MASQUERADE 198.18.0.0/24 -> eth0
                            FORWARD: established; lan0 -> eth0; manager -> tcp/22 only
                              `-- kvl-nat2 <-> [kvmlab-nat2] eth0 198.18.0.12, gw .1

``nat2`` reaches ``vpn1`` only through the masquerading router; nothing from
198.51.100.0/24 reaches 198.18.0.0/24 except the manager's ssh (so the manager
can install the tunnel: the "out-of-band path" a real admin has, e.g. a port
forward). ``vpn1`` has no route to 198.18.0.0/24 at all. Both lab nodes here
run sshd on all addresses, so peers reach it at their tunnel addresses too.
"""

from __future__ import annotations

from tests.lab._util import run
from tests.lab.lab import Lab
from tests.lab.node import BRIDGE, NETNS_PREFIX, LabNode, attach_netns, disable_ipv6

ROUTER = "router"
ROUTER_NETNS = f"{NETNS_PREFIX}{ROUTER}"
ROUTER_OUTSIDE = "198.51.100.254"
ROUTER_INSIDE = "198.18.0.1"
INSIDE_NET = "198.18.0.0/24"
INSIDE_BRIDGE = "lan0"
MANAGER = "198.51.100.1"
TUNNEL_NET = "100.64.0.0/24"


def _router(*args: str) -> None:
    run(["ip", "netns", "exec", ROUTER_NETNS, *args], timeout=10)


def ensure_router() -> None:
    """Create the router namespace with its NAT and forwarding rules (idempotent)."""
    if run(["ip", "netns", "pids", ROUTER_NETNS], check=False).returncode == 0:
        return
    attach_netns(ROUTER_NETNS, ROUTER, ROUTER_OUTSIDE)
    run(["ip", "-n", ROUTER_NETNS, "link", "add", INSIDE_BRIDGE, "type", "bridge"], timeout=10)
    run(
        ["ip", "-n", ROUTER_NETNS, "addr", "add", f"{ROUTER_INSIDE}/24", "dev", INSIDE_BRIDGE],
        timeout=10,
    )
    run(["ip", "-n", ROUTER_NETNS, "link", "set", INSIDE_BRIDGE, "up"], timeout=10)
    _router("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    _router("iptables", "-t", "nat", "-A", "POSTROUTING", "-s", INSIDE_NET, "-o", "eth0",
            "-j", "MASQUERADE")  # fmt: skip
    _router("iptables", "-P", "FORWARD", "DROP")
    _router("iptables", "-A", "FORWARD", "-m", "conntrack", "--ctstate",
            "ESTABLISHED,RELATED", "-j", "ACCEPT")  # fmt: skip
    _router("iptables", "-A", "FORWARD", "-i", INSIDE_BRIDGE, "-o", "eth0", "-j", "ACCEPT")
    _router("iptables", "-A", "FORWARD", "-i", "eth0", "-o", INSIDE_BRIDGE, "-s", MANAGER,
            "-p", "tcp", "--dport", "22", "-j", "ACCEPT")  # fmt: skip
    # The manager (root namespace) reaches NATed nodes' sshd through the router.
    run(["ip", "route", "replace", INSIDE_NET, "via", ROUTER_OUTSIDE, "dev", BRIDGE], timeout=10)


def attach_behind_router(node: LabNode) -> None:
    """A node netns whose eth0 sits on the router's inside bridge, default route via it."""
    run(["ip", "netns", "add", node.netns], timeout=10)
    disable_ipv6(node.netns)
    inside = f"kvl-{node.name}"
    run(
        ["ip", "link", "add", inside, "netns", ROUTER_NETNS, "type", "veth",
         "peer", "name", "eth0", "netns", node.netns],
        timeout=10,
    )  # fmt: skip
    run(["ip", "-n", ROUTER_NETNS, "link", "set", inside, "master", INSIDE_BRIDGE, "up"])
    run(["ip", "-n", node.netns, "addr", "add", f"{node.address}/24", "dev", "eth0"])
    run(["ip", "-n", node.netns, "link", "set", "eth0", "up"])
    run(["ip", "-n", node.netns, "link", "set", "lo", "up"])
    run(["ip", "-n", node.netns, "route", "add", "default", "via", ROUTER_INSIDE])


def _start(lab: Lab, node: LabNode) -> LabNode:
    lab.nodes[node.name] = node
    lab._save_state()
    node.launch()
    node.wait_ready(120)
    return node


def add_public_node(lab: Lab, name: str = "vpn1") -> LabNode:
    """A node on the lab bridge (198.51.100.x) with sshd on all its addresses."""
    if name in lab.nodes:
        return lab.nodes[name]
    index = max((n.index for n in lab.nodes.values()), default=0) + 1
    node = LabNode(
        name, index, lab.key_path, lab.authorized_keys, state_root=lab.state_root,
        ssh_listen="0.0.0.0",
    )  # fmt: skip
    return _start(lab, node)


def add_nat_node(lab: Lab, name: str = "nat2", host: int = 12) -> LabNode:
    """A node at 198.18.0.HOST behind the router (created first if needed)."""
    if name in lab.nodes:
        return lab.nodes[name]
    ensure_router()
    index = max((n.index for n in lab.nodes.values()), default=0) + 1
    node = LabNode(
        name, index, lab.key_path, lab.authorized_keys, address=f"198.18.0.{host}",
        state_root=lab.state_root, attach=attach_behind_router, ssh_listen="0.0.0.0",
    )  # fmt: skip
    return _start(lab, node)


def route_tunnel_via(server: LabNode, device: str) -> None:
    """Let the manager reach tunnel addresses through the VPN server node.

    The server forwards and masquerades the manager's packets into the tunnel,
    so clients answer through the tunnel without routes of their own.
    """
    ns = ["ip", "netns", "exec", server.netns]
    run([*ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], timeout=10)
    rule = ["POSTROUTING", "-s", MANAGER, "-o", device, "-j", "MASQUERADE"]
    if run([*ns, "iptables", "-t", "nat", "-C", *rule], check=False).returncode != 0:
        run([*ns, "iptables", "-t", "nat", "-A", *rule], timeout=10)
    run(["ip", "route", "replace", TUNNEL_NET, "via", server.address, "dev", BRIDGE])


def netns_run(node: LabNode, *args: str, timeout: float = 30.0) -> int:
    """Exit status of a command run inside a node's network namespace (probes)."""
    return run(["ip", "netns", "exec", node.netns, *args], check=False, timeout=timeout).returncode
