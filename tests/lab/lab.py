"""The integration lab: SSH key, bridge, nodes, a blackhole address, tiny guests.

Topology (all on this machine, nothing routed anywhere else)::

    root netns: kvmlab0 198.51.100.1/24 (bridge; only its connected route)
       |-- kvl-node1 <-> [netns kvmlab-node1] eth0 198.51.100.11  libvirtd+sshd
       |-- kvl-node2 <-> [netns kvmlab-node2] eth0 198.51.100.12  libvirtd+sshd
       `-- kvl-blackhole <-> [netns kvmlab-blackhole] eth0 198.51.100.250
                                  (iptables INPUT DROP: SYNs vanish)

The blackhole exists because an unreachable host must be reported quickly by
kvmmgr, and a dropped SYN (not a refused one) is the realistic failure.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.lab._util import (
    STATE_ROOT,
    LabError,
    link_exists,
    list_netns,
    log,
    run,
)
from tests.lab.guest import GUEST_MARKER, ensure_guest_artifacts, guest_domain_xml
from tests.lab.node import (
    BRIDGE,
    BRIDGE_ADDRESS,
    NETNS_PREFIX,
    PREFIX,
    VETH_PREFIX,
    LabNode,
    attach_netns,
    disable_ipv6,
    remove_netns,
    ssh_argv,
)

BLACKHOLE_ADDRESS = "198.51.100.250"
BLACKHOLE_NETNS = f"{NETNS_PREFIX}blackhole"
# Behind-NAT LAN, tunnel and bridged overlay: never reachable from the root namespace
# (the manager). The NAT lab marks them unreachable there; teardown removes the marks.
UNROUTED_NETS = ("198.18.0.0/24", "100.64.0.0/24", "198.19.0.0/24")


@dataclass(frozen=True)
class GuestInfo:
    """What tests need to know about a lab guest."""

    node: LabNode
    name: str
    uuid: str
    serial_log: Path  # root-namespace path of the serial log file


class Lab:
    """Owner of all lab resources; ``teardown()`` (or ``cleanup_stale()``) removes them."""

    def __init__(self, state_root: Path = STATE_ROOT) -> None:
        self.state_root = state_root
        self.ssh_dir = state_root / "ssh"
        self.key_path = self.ssh_dir / "id_ed25519"
        self.authorized_keys = self.ssh_dir / "authorized_keys"
        self.nodes: dict[str, LabNode] = {}
        self.blackhole_address = BLACKHOLE_ADDRESS

    # -- lifecycle --------------------------------------------------------------

    def setup(self) -> Lab:
        """Clean leftovers, then create key, bridge and blackhole. Returns self."""
        self.cleanup_stale(self.state_root)
        self._ensure_key()
        self._ensure_bridge()
        self._ensure_blackhole()
        self._save_state()
        return self

    def add_node(self, name: str, timeout: float = 120.0) -> LabNode:
        """Start one node and wait until it answers ``virsh`` over ssh."""
        return self.add_nodes([name], timeout)[0]

    def add_nodes(self, names: list[str], timeout: float = 120.0) -> list[LabNode]:
        """Start several nodes; launching all before waiting overlaps their startup."""
        new = []
        for name in names:
            if name in self.nodes:
                raise LabError(f"node {name} already exists")
            index = max((n.index for n in self.nodes.values()), default=0) + 1
            node = LabNode(
                name, index, self.key_path, self.authorized_keys, state_root=self.state_root
            )
            self.nodes[name] = node
            self._save_state()
            node.launch()
            new.append(node)
        # libvirt probes qemu lazily on the first connection (~8 s cold), so the
        # waits run in parallel or the probes would happen one node after another.
        with ThreadPoolExecutor(max_workers=max(1, len(new))) as pool:
            for future in [pool.submit(node.wait_ready, timeout) for node in new]:
                future.result()
        return new

    def teardown(self) -> None:
        """Stop every node, the blackhole and the bridge. Safe to call twice."""
        for node in list(self.nodes.values()):
            node.stop()
        self.nodes.clear()
        self.cleanup_stale(self.state_root)

    @staticmethod
    def cleanup_stale(state_root: Path = STATE_ROOT) -> None:
        """Remove what a previous (possibly crashed) run left: kvmlab-* netns, bridge, processes.

        Processes are found per namespace (``ip netns pids``) and via the nodes'
        pidfiles, i.e. only processes the lab itself started.
        """
        nodes_dir = state_root / "nodes"
        names = {
            ns.removeprefix(NETNS_PREFIX) for ns in list_netns() if ns.startswith(NETNS_PREFIX)
        }
        if nodes_dir.is_dir():
            names |= {p.name for p in nodes_dir.iterdir() if p.is_dir()}
        for name in sorted(names):
            pidfiles = [nodes_dir / name / f"{d}.pid" for d in ("libvirtd", "virtlogd", "sshd")]
            pidfiles += list((nodes_dir / name / "run" / "qemu").glob("*.pid"))
            remove_netns(f"{NETNS_PREFIX}{name}", name, pidfiles)
        for iface in Path("/sys/class/net").iterdir():
            if iface.name.startswith(VETH_PREFIX):
                run(["ip", "link", "del", iface.name], check=False, timeout=10)
        if link_exists(BRIDGE):
            run(["ip", "link", "del", BRIDGE], check=False, timeout=10)
        for net in UNROUTED_NETS:  # set by the NAT lab (tests/lab/nat.py)
            run(["ip", "route", "del", "unreachable", net], check=False, timeout=10)
        (state_root / "state.json").unlink(missing_ok=True)

    @classmethod
    def attach(cls, state_root: Path = STATE_ROOT) -> Lab:
        """Re-open a lab started by another process (``python -m tests.lab up``)."""
        lab = cls(state_root)
        try:
            state = json.loads((state_root / "state.json").read_text())
        except (OSError, ValueError) as exc:
            raise LabError("no running lab (run `python -m tests.lab up`)") from exc
        for entry in state.get("nodes", []):
            lab.nodes[entry["name"]] = LabNode(
                entry["name"],
                int(entry["index"]),
                lab.key_path,
                lab.authorized_keys,
                address=entry["address"],
                state_root=state_root,
                manager_host=entry.get("manager_host"),
                manager_port=int(entry.get("manager_port", 22)),
            )
        return lab

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary for the CLI and for benchmark scripts."""
        return {
            "key": str(self.key_path),
            "bridge": f"{BRIDGE} {BRIDGE_ADDRESS}/{PREFIX}",
            "blackhole": self.blackhole_address,
            "nodes": [
                {
                    "name": n.name,
                    "index": n.index,
                    "address": n.address,
                    "uri": n.uri,
                    "host_uuid": n.host_uuid,
                    "running": n.running(),
                }
                for n in self.nodes.values()
            ],
        }

    def ssh_argv(self, address: str, connect_timeout: int = 5) -> list[str]:
        """ssh prefix with the lab key for any lab address (e.g. the blackhole)."""
        return ssh_argv(self.key_path, address, connect_timeout)

    # -- guests -----------------------------------------------------------------

    def define_guest(
        self,
        node: LabNode,
        name: str,
        *,
        disk_mib: int | None = None,
        **kwargs: Any,
    ) -> GuestInfo:
        """Define (not start) a tiny guest on ``node``.

        ``disk_mib`` creates a qcow2 volume ``NAME.qcow2`` in the node's default
        pool first; other keyword arguments go to :func:`guest_domain_xml`.
        """
        artifacts = ensure_guest_artifacts()
        if disk_mib is not None:
            vol = f"{name}.qcow2"
            node.virsh(
                "vol-create-as",
                "default",
                vol,
                f"{int(disk_mib)}M",
                "--format",
                "qcow2",
                check=True,
            )
            kwargs["disk_path"] = Path("/var/lib/libvirt/images") / vol
        serial_log = Path(
            kwargs.setdefault("serial_log", Path(f"/var/log/libvirt/qemu/{name}-serial.log"))
        )
        xml = guest_domain_xml(name, artifacts.kernel, artifacts.initrd, **kwargs)
        with tempfile.NamedTemporaryFile("w", suffix=".xml", prefix=f"kvmlab-{name}-") as fh:
            fh.write(xml)
            fh.flush()
            node.virsh("define", fh.name, check=True)
        uuid = node.virsh("domuuid", name, check=True).stdout.strip()
        return GuestInfo(node=node, name=name, uuid=uuid, serial_log=node.host_path(serial_log))

    def start_guest(self, node: LabNode, name: str) -> None:
        """Start a defined guest."""
        node.virsh("start", name, check=True)

    def wait_guest_up(
        self,
        node: LabNode,
        name: str,
        timeout: float = 60.0,
        serial_log: Path | None = None,
        boots: int = 1,
    ) -> float:
        """Wait for the boot marker in the guest's serial log; return seconds waited.

        ``boots`` is how many markers the log must hold: a reboot keeps the same qemu
        process and serial log, so waiting for the second boot needs ``boots=2``.
        """
        path = serial_log or node.host_path(f"/var/log/libvirt/qemu/{name}-serial.log")
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                if path.read_text(errors="replace").count(GUEST_MARKER) >= boots:
                    return time.monotonic() - started
            except FileNotFoundError:
                pass
            time.sleep(0.2)
        tail = path.read_text(errors="replace")[-2000:] if path.exists() else "(no serial log)"
        raise LabError(
            f"guest {name} on {node.name} not up after {timeout:.0f}s; serial log:\n{tail}"
        )

    def boot_guest(
        self, node: LabNode, name: str, timeout: float = 60.0, **kwargs: Any
    ) -> tuple[GuestInfo, float]:
        """Define + start + wait; returns the guest and the start-to-marker seconds."""
        info = self.define_guest(node, name, **kwargs)
        started = time.monotonic()
        self.start_guest(node, name)
        self.wait_guest_up(node, name, timeout, serial_log=info.serial_log)
        return info, time.monotonic() - started

    def remove_guest(self, name: str, *nodes: LabNode) -> None:
        """Stop and undefine ``name`` and delete its ``NAME.qcow2`` on each node.

        Whichever node the guest ended on (a migration test may leave it on either);
        what does not exist is skipped. A guest left running burns a share of the
        CPU under TCG and slows every later test.
        """
        for node in nodes:
            node.virsh("destroy", name)
            node.virsh("undefine", name, "--nvram")
            node.virsh("vol-delete", "--pool", "default", f"{name}.qcow2")

    # -- internals ----------------------------------------------------------------

    def _ensure_key(self) -> None:
        """Create the lab's ed25519 keypair once; authorized on every node."""
        self.ssh_dir.mkdir(parents=True, exist_ok=True)
        self.state_root.chmod(0o755)
        self.ssh_dir.chmod(0o700)
        if not self.key_path.exists():
            run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "kvmmgr-lab",
                    "-f",
                    self.key_path,
                ]
            )
        self.key_path.chmod(0o600)
        pub = self.key_path.with_name("id_ed25519.pub").read_text()
        self.authorized_keys.write_text(pub)
        self.authorized_keys.chmod(0o600)

    def _ensure_bridge(self) -> None:
        """Root-namespace bridge; its connected /24 is the only route the lab adds."""
        if not link_exists(BRIDGE):
            run(["ip", "link", "add", BRIDGE, "type", "bridge"], timeout=10)
            disable_ipv6(None, BRIDGE)
            run(["ip", "addr", "add", f"{BRIDGE_ADDRESS}/{PREFIX}", "dev", BRIDGE], timeout=10)
        run(["ip", "link", "set", BRIDGE, "up"], timeout=10)

    def _ensure_blackhole(self) -> None:
        """A netns that answers ARP but drops every inbound packet."""
        remove_netns(BLACKHOLE_NETNS, "blackhole")
        attach_netns(BLACKHOLE_NETNS, "blackhole", BLACKHOLE_ADDRESS)
        run(
            ["ip", "netns", "exec", BLACKHOLE_NETNS, "iptables", "-A", "INPUT", "-j", "DROP"],
            timeout=10,
        )

    def _save_state(self) -> None:
        """Persist node names/addresses so the CLI can find a lab it did not start."""
        state = {
            "pid": os.getpid(),
            "nodes": [
                {
                    "name": n.name,
                    "index": n.index,
                    "address": n.address,
                    "manager_host": n.manager_host,
                    "manager_port": n.manager_port,
                }
                for n in self.nodes.values()
            ],
        }
        self.state_root.mkdir(parents=True, exist_ok=True)
        (self.state_root / "state.json").write_text(json.dumps(state, indent=2))


def log_lab(lab: Lab) -> None:
    """Log a one-line summary (used by fixtures)."""
    log.info("lab: %s", json.dumps(lab.describe()))
