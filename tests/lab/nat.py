"""The NAT lab: a router namespace and nodes in another subnet behind it (issues 5, 11).

Topology (added to the regular lab; nothing else in the root namespace changes)::

    root netns (manager) kvmlab0 198.51.100.1/24   no route to 198.18.0.0/24 or 100.64.0.0/24
       |-- kvl-vpn1   <-> [kvmlab-vpn1]   eth0 198.51.100.13   OpenVPN server
       `-- kvl-router <-> [kvmlab-router] eth0 198.51.100.254
                            lan0 198.18.0.1/24 (bridge)  MASQUERADE 198.18.0.0/24 -> eth0
                            DNAT 198.51.100.254:22HH/tcp -> 198.18.0.HH:22 (port forward)
                            FORWARD: established; lan0 -> eth0; port-forwarded ssh only
                              `-- kvl-nat2 <-> [kvmlab-nat2] eth0 198.18.0.12, gw .1

This is the topology admins have: the manager reaches a node behind NAT *only*
through a port forward on its router's outside address (``nat2`` is
``qemu+ssh://root@198.51.100.254:2222/system``), never its inside address, and has
no route into the tunnel subnet. ``nat2`` reaches ``vpn1`` only through the
masquerading router; ``vpn1`` has no route to 198.18.0.0/24 at all, so migrations
between them need the tunnel the product builds (``vpn up``). Both lab nodes here
run sshd on all addresses, so peers reach it at their tunnel addresses too.
"""

from __future__ import annotations

from tests.lab._util import run
from tests.lab.lab import UNROUTED_NETS, Lab
from tests.lab.node import NETNS_PREFIX, LabNode, attach_netns, disable_ipv6

ROUTER = "router"
ROUTER_NETNS = f"{NETNS_PREFIX}{ROUTER}"
ROUTER_OUTSIDE = "198.51.100.254"
ROUTER_INSIDE = "198.18.0.1"
INSIDE_NET = "198.18.0.0/24"
INSIDE_BRIDGE = "lan0"
TUNNEL_NET = "100.64.0.0/24"
PORT_FORWARD_BASE = 2210  # 198.18.0.12 is forwarded from ROUTER_OUTSIDE:2222


def forwarded_port(host: int) -> int:
    """The router's outside TCP port forwarded to sshd of the node at 198.18.0.HOST."""
    return PORT_FORWARD_BASE + host


def _router(*args: str) -> None:
    run(["ip", "netns", "exec", ROUTER_NETNS, *args], timeout=10)


def ensure_router() -> None:
    """Create the router namespace with its NAT and forwarding rules (idempotent)."""
    # The manager has no route into the NAT'd LAN or the tunnel (nor does it in the
    # world). "unreachable" routes say so at once, and keep a lab address from ever
    # leaving the machine by its default route.
    for net in UNROUTED_NETS:
        run(["ip", "route", "replace", "unreachable", net], timeout=10)
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
    # Only what a port forward let in (see forward_ssh) crosses from outside to inside.
    _router("iptables", "-A", "FORWARD", "-i", "eth0", "-o", INSIDE_BRIDGE, "-p", "tcp",
            "--dport", "22", "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT")  # fmt: skip


def forward_ssh(host: int) -> int:
    """Port-forward ROUTER_OUTSIDE:22HH to 198.18.0.HOST:22 (idempotent); returns the port."""
    port = forwarded_port(host)
    rule = ["PREROUTING", "-i", "eth0", "-d", ROUTER_OUTSIDE, "-p", "tcp", "--dport", str(port),
            "-j", "DNAT", "--to-destination", f"198.18.0.{host}:22"]  # fmt: skip
    if run(["ip", "netns", "exec", ROUTER_NETNS, "iptables", "-t", "nat", "-C", *rule],
           check=False, timeout=10).returncode != 0:  # fmt: skip
        _router("iptables", "-t", "nat", "-A", *rule)
    return port


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
    port = forward_ssh(host)
    index = max((n.index for n in lab.nodes.values()), default=0) + 1
    node = LabNode(
        name, index, lab.key_path, lab.authorized_keys, address=f"198.18.0.{host}",
        state_root=lab.state_root, attach=attach_behind_router, ssh_listen="0.0.0.0",
        manager_host=ROUTER_OUTSIDE, manager_port=port,
    )  # fmt: skip
    return _start(lab, node)


def netns_run(node: LabNode, *args: str, timeout: float = 30.0) -> int:
    """Exit status of a command run inside a node's network namespace (probes)."""
    return run(["ip", "netns", "exec", node.netns, *args], check=False, timeout=timeout).returncode
