"""A lab "host": a real libvirtd + sshd in private network, mount and UTS namespaces.

kvmmgr talks to KVM hosts over ``qemu+ssh``. Rather than faking libvirt, each
lab node runs the real daemons, isolated so several of them can share this
machine: its own netns (reachable from the root namespace over the lab bridge),
its own /etc/libvirt copy with a unique ``host_uuid`` (libvirt refuses to
migrate to "the same host" otherwise), and private run/lib/log/cache dirs.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.lab._node_init import BIND_MOUNTS
from tests.lab._util import (
    REPO_ROOT,
    STATE_ROOT,
    LabError,
    link_exists,
    list_netns,
    log,
    netns_pids,
    read_pid,
    run,
    terminate_pids,
    wait_for,
)

BRIDGE = "kvmlab0"
BRIDGE_ADDRESS = "198.51.100.1"
PREFIX = 24
NETNS_PREFIX = "kvmlab-"
VETH_PREFIX = "kvl-"
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,10}$")
UUID_NAMESPACE = uuid.UUID("6f6b1d1e-8f0e-4c52-9a57-6b766d6d6772")

LIBVIRTD_EXTRA = """
# --- kvmmgr lab node settings ---
host_uuid = "{host_uuid}"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""

QEMU_EXTRA = """
# --- kvmmgr lab node settings ---
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
# The node's hostname does not resolve; make incoming migrations use its address.
migration_host = "{address}"
"""

SSHD_CONFIG = """# kvmmgr lab node {name}
ListenAddress {listen}
Port 22
HostKey {host_key}
PidFile {pidfile}
AuthorizedKeysFile .ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp /usr/lib/openssh/sftp-server
"""


def veth_name(name: str) -> str:
    """Root-side veth name for a node (kernel limit: 15 characters)."""
    return f"{VETH_PREFIX}{name}"


def disable_ipv6(netns: str | None, iface: str = "all") -> None:
    """Keep the lab IPv4-only so no link-local IPv6 chatter leaves our links."""
    keys = [f"net.ipv6.conf.{iface}.disable_ipv6=1"]
    if iface == "all":
        keys.append("net.ipv6.conf.default.disable_ipv6=1")
    prefix = ["ip", "netns", "exec", netns] if netns else []
    run([*prefix, "sysctl", "-q", "-w", *keys], check=False, timeout=10)


def attach_netns(netns: str, name: str, address: str) -> None:
    """Create ``netns`` with a veth into the lab bridge carrying ``address``/24."""
    run(["ip", "netns", "add", netns], timeout=10)
    disable_ipv6(netns)
    veth = veth_name(name)
    run(
        ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns],
        timeout=10,
    )
    disable_ipv6(None, veth)
    run(["ip", "link", "set", veth, "master", BRIDGE, "up"], timeout=10)
    run(["ip", "-n", netns, "addr", "add", f"{address}/{PREFIX}", "dev", "eth0"], timeout=10)
    run(["ip", "-n", netns, "link", "set", "eth0", "up"], timeout=10)
    run(["ip", "-n", netns, "link", "set", "lo", "up"], timeout=10)


def remove_netns(netns: str, name: str, pidfiles: list[Path] | None = None) -> None:
    """Kill every process inside ``netns`` (plus live pidfile PIDs), then delete it.

    Safe to call repeatedly and after a crash: everything is looked up afresh.
    """
    pids = set(netns_pids(netns)) if netns in list_netns() else set()
    target_ino = _netns_inode(netns)
    for pidfile in pidfiles or []:
        pid = read_pid(pidfile)
        # A recycled PID must not be killed: require it to sit in our netns.
        if pid is not None and target_ino is not None and _pid_netns_inode(pid) == target_ino:
            pids.add(pid)
    if pids:
        terminate_pids(pids)
    if netns in list_netns():
        run(["ip", "netns", "del", netns], check=False, timeout=10)
    if link_exists(veth_name(name)):
        run(["ip", "link", "del", veth_name(name)], check=False, timeout=10)


def _netns_inode(netns: str) -> int | None:
    """Inode of a named netns (what /proc/PID/ns/net of its members points to)."""
    try:
        return os.stat(f"/run/netns/{netns}").st_ino
    except OSError:
        return None


def _pid_netns_inode(pid: int) -> int | None:
    """Inode of the network namespace process ``pid`` is in."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def ssh_argv(key_path: Path, address: str, connect_timeout: int = 5, port: int = 22) -> list[str]:
    """ssh prefix with the lab key that never prompts and never writes known_hosts.

    ``ConnectTimeout`` matters: without it an unreachable address hangs ~2 min.
    """
    return [
        "ssh",
        "-p",
        str(port),
        "-i",
        str(key_path),
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={int(connect_timeout)}",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        f"root@{address}",
    ]


def tcp_open(address: str, port: int, timeout: float) -> bool:
    """True if a TCP connection to address:port succeeds within ``timeout``."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


class LabNode:
    """One fake KVM host; see the module docstring.

    ``start()`` = ``launch()`` + ``wait_ready()``; the lab launches several nodes
    before waiting so their first (~15 s) libvirt capability probes overlap.
    """

    def __init__(
        self,
        name: str,
        index: int,
        key_path: Path,
        authorized_keys: Path,
        address: str | None = None,
        state_root: Path = STATE_ROOT,
        *,
        attach: Callable[[LabNode], None] | None = None,
        ssh_listen: str | None = None,
        manager_host: str | None = None,
        manager_port: int = 22,
    ) -> None:
        if not NAME_RE.match(name) or name == "blackhole":
            raise ValueError(f"bad node name {name!r} (lowercase, <= 11 chars)")
        self.name = name
        self.index = index
        self.address = address or f"198.51.100.{10 + index}"
        self.key_path = key_path
        self.authorized_keys = authorized_keys
        self.netns = f"{NETNS_PREFIX}{name}"
        self.dir = state_root / "nodes" / name
        self.host_uuid = str(uuid.uuid5(UUID_NAMESPACE, f"kvmmgr-lab-node:{name}"))
        # Defaults: a veth into the lab bridge, sshd on the node address only. The
        # NAT lab (tests/lab/nat.py) attaches behind its router and listens on all
        # addresses so peers reach sshd at the node's tunnel address too.
        self.attach = attach
        self.ssh_listen = ssh_listen or self.address
        # How the manager (the root namespace) reaches this node's sshd: the node's own
        # address, or a router's port forward for a node behind NAT (tests/lab/nat.py).
        self.manager_host = manager_host or self.address
        self.manager_port = manager_port

    # -- public API -----------------------------------------------------------

    @property
    def uri(self) -> str:
        """The libvirt URI the product should use (host key pinning is its job): the
        manager's path to the node, a port forward for a node behind NAT."""
        port = f":{self.manager_port}" if self.manager_port != 22 else ""
        return f"qemu+ssh://root@{self.manager_host}{port}/system"

    @property
    def harness_uri(self) -> str:
        """URI for the lab's own virsh calls: lab key, no host-key verification."""
        return f"{self.uri}?keyfile={self.key_path}&no_verify=1&no_tty=1"

    def virsh(
        self, *args: str, timeout: float = 60.0, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run ``virsh`` against this node over qemu+ssh with the lab key."""
        return run(["virsh", "-q", "-c", self.harness_uri, *args], check=check, timeout=timeout)

    def local_virsh(
        self, *args: str, timeout: float = 60.0, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run ``virsh`` inside the node's namespaces (no ssh): for setup and probes."""
        pid = read_pid(self.dir / "libvirtd.pid")
        if pid is None:
            raise LabError(f"libvirtd of node {self.name} is not running")
        cmd = [
            "nsenter",
            "-t",
            str(pid),
            "-m",
            "-u",
            "-n",
            "--",
            "virsh",
            "-q",
            "-c",
            "qemu:///system",
            *args,
        ]
        return run(cmd, check=check, timeout=timeout)

    def guest_report(self, name: str) -> str:
        """Is guest ``name`` making progress here? For failure messages of guest checks.

        Its state, its vCPU's registers and LAPIC timer twice a second apart
        and the code it runs (a monitor that does not answer says qemu's main loop is
        stuck), the CPU seconds its qemu used meanwhile, each qemu thread's state and
        kernel wait channel, and the tail of its qemu log.
        """

        def ask(*args: str) -> str:
            try:
                done = self.local_virsh(*args, timeout=10)
            except subprocess.TimeoutExpired:
                return f"virsh {' '.join(args)}: no answer within 10 s"
            return (done.stdout or done.stderr).strip()

        lines = [f"{name} on {self.name}: {ask('domstate', '--reason', name)}"]
        pid = read_pid(self.host_path(f"/run/libvirt/qemu/{name}.pid"))
        cpu_seconds = []
        for _ in range(2):
            registers = ask("qemu-monitor-command", name, "--hmp", "info registers")
            lines += [line for line in registers.splitlines() if line.startswith(("R", "TSC"))]
            lapic = ask("qemu-monitor-command", name, "--hmp", "info lapic")
            lines += [line for line in lapic.splitlines() if "timer" in line.lower()]
            lines += [] if "RIP=" in registers else [registers[:300]]
            if pid is not None:
                cpu_seconds.append(_cpu_seconds(Path(f"/proc/{pid}/stat")))
            time.sleep(1)
        lines.append(ask("qemu-monitor-command", name, "--hmp", "x/10i $pc"))
        if pid is not None:
            lines.append(f"qemu pid {pid}, CPU seconds: {cpu_seconds}")
            for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
                try:
                    comm = (task / "comm").read_text().strip()
                    state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
                    wchan = (task / "wchan").read_text().strip()
                except OSError:
                    continue
                lines.append(f"  thread {task.name} {comm}: {state} {wchan}")
        log = self.host_path(f"/var/log/libvirt/qemu/{name}.log")
        if log.exists():
            lines.append("qemu log tail:\n" + log.read_text(errors="replace")[-1200:])
        return "\n".join(lines)

    def ssh(
        self, *args: str, timeout: float = 30.0, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run a command on the node over ssh with the lab key (no known_hosts writes)."""
        return run([*self.ssh_argv(), *args], check=check, timeout=timeout)

    def ssh_argv(self, connect_timeout: int = 5) -> list[str]:
        """ssh argument prefix for this node, usable by tests that need raw ssh."""
        return ssh_argv(self.key_path, self.manager_host, connect_timeout, self.manager_port)

    def host_path(self, inner: str | Path) -> Path:
        """Map a path as seen inside the node (e.g. /var/log/libvirt/...) to the root view."""
        inner = Path(inner)
        for sub, target in BIND_MOUNTS.items():
            try:
                rel = inner.relative_to(target)
            except ValueError:
                continue
            return self.dir / sub / rel
        return inner

    @property
    def host_key_pub(self) -> str:
        """This node's sshd host public key line (for products that pin keys)."""
        return (self.dir / "ssh_host_ed25519_key.pub").read_text().strip()

    def start(self, timeout: float = 120.0) -> None:
        """Bring the node up and wait until libvirt answers over ssh."""
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Create the network namespace, config files, and start the daemons."""
        self.stop()
        self._prepare_dirs()
        if self.attach is not None:
            self.attach(self)
        else:
            attach_netns(self.netns, self.name, self.address)
        init_log = self.dir / "node-init.log"
        cmd = [
            "ip",
            "netns",
            "exec",
            self.netns,
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "--",
            sys.executable,
            "-m",
            "tests.lab._node_init",
            "--name",
            self.name,
            "--dir",
            str(self.dir),
        ]
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "PYTHONPATH": str(REPO_ROOT),
        }
        with open(init_log, "wb") as out:
            proc = subprocess.run(
                cmd,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=180,
                check=False,
            )
        if proc.returncode != 0:
            raise LabError(f"node {self.name} init failed: {init_log.read_text()}")

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait for libvirtd (local probe) and sshd, then create the default pool."""
        started = time.monotonic()
        wait_for(self._libvirt_answers, timeout, 0.25, f"libvirtd on {self.name}")
        wait_for(
            lambda: tcp_open(self.manager_host, self.manager_port, 1.0), 20, 0.2,
            f"sshd on {self.name} (through {self.manager_host}:{self.manager_port})",
        )  # fmt: skip
        self._define_default_pool()
        proc = self.virsh("version", timeout=30)
        if proc.returncode != 0:
            raise LabError(f"virsh over ssh to {self.name} failed: {proc.stderr.strip()}")
        log.info("node %s ready in %.1fs", self.name, time.monotonic() - started)

    def add_guest_bridge(self, bridge: str = "labbr0", address: str = "198.19.0.1/24") -> str:
        """Create a bridge inside the node's netns for guest NICs; returns its name.

        Guests get ``bridge=`` in :func:`guest_domain_xml` and ``ip=198.19.0.X/24``
        on their kernel cmdline; the overlay is never routed outside the node.
        """
        if run(["ip", "-n", self.netns, "link", "show", bridge], check=False).returncode != 0:
            run(["ip", "-n", self.netns, "link", "add", bridge, "type", "bridge"], timeout=10)
            run(["ip", "-n", self.netns, "addr", "add", address, "dev", bridge], timeout=10)
        run(["ip", "-n", self.netns, "link", "set", bridge, "up"], timeout=10)
        return bridge

    def remove_guest_bridge(self, bridge: str = "labbr0") -> None:
        """Delete the bridge :meth:`add_guest_bridge` made (its address goes with it).

        Nodes are shared by a session: a bridge left behind would make the node's own
        network overlap a later test's tunnel subnet.
        """
        run(["ip", "-n", self.netns, "link", "del", bridge], check=False, timeout=10)

    def running(self) -> bool:
        """True if this node's libvirtd is alive."""
        return read_pid(self.dir / "libvirtd.pid") is not None

    def qemu_pids(self) -> list[int]:
        """PIDs of this node's qemu processes (libvirt's per-domain pidfiles)."""
        pids = []
        for pidfile in (self.dir / "run" / "qemu").glob("*.pid"):
            pid = read_pid(pidfile)
            if pid is not None:
                pids.append(pid)
        return pids

    def stop(self) -> None:
        """Kill the node's daemons and guests, delete its netns and veth. Idempotent."""
        pidfiles = [self.dir / f"{d}.pid" for d in ("libvirtd", "virtlogd", "sshd")]
        pidfiles += list((self.dir / "run" / "qemu").glob("*.pid"))
        remove_netns(self.netns, self.name, pidfiles)

    # -- internals ------------------------------------------------------------

    def _libvirt_answers(self) -> bool:
        """True once libvirtd's drivers are initialised and answer a probe."""
        if read_pid(self.dir / "libvirtd.pid") is None:
            return False
        return self.local_virsh("version", timeout=20).returncode == 0

    def _prepare_dirs(self) -> None:
        """Fresh per-run state; the capability cache and host key are kept."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        for sub in ("etc", "run", "lib", "log", "rootssh", "openvpn", "openvpnrun"):
            shutil.rmtree(self.dir / sub, ignore_errors=True)
        for stale in (
            "libvirtd.pid",
            "virtlogd.pid",
            "sshd.pid",
            "mntns",
            "daemons.log",
            "sshd.log",
        ):
            (self.dir / stale).unlink(missing_ok=True)
        shutil.copytree("/etc/libvirt", self.dir / "etc", symlinks=True)
        # libvirt's "default" NAT network uses 192.168.122.0/24: never let it start.
        for network_xml in (self.dir / "etc" / "qemu" / "networks").rglob("*.xml"):
            network_xml.unlink()
        for sub in ("run", "lib", "log", "cache", "openvpn", "openvpnrun"):
            (self.dir / sub).mkdir(exist_ok=True)
        # The node's private /root/.ssh starts with only the lab's key authorized.
        (self.dir / "rootssh").mkdir(mode=0o700)
        shutil.copyfile(self.authorized_keys, self.dir / "rootssh" / "authorized_keys")
        (self.dir / "rootssh" / "authorized_keys").chmod(0o600)
        Path("/root/.ssh").mkdir(mode=0o700, exist_ok=True)
        (self.dir / "lib" / "images").mkdir()
        # qemu opens the default serial log path before libvirt creates this dir.
        (self.dir / "log" / "qemu").mkdir()
        # As on a real Debian host, the node's own name resolves locally; and no
        # nameserver: a lookup must never leave the lab (libvirt resolves its own
        # hostname at the end of every incoming migration: with the machine's
        # resolver that cost a 5 s DNS timeout on nodes that have a default route).
        (self.dir / "hosts").write_text(f"127.0.0.1\tlocalhost\n{self.address}\t{self.name}\n")
        (self.dir / "resolv.conf").write_text("# kvmmgr lab node: no DNS\n")
        with open(self.dir / "etc" / "libvirtd.conf", "a") as fh:
            fh.write(LIBVIRTD_EXTRA.format(host_uuid=self.host_uuid))
        with open(self.dir / "etc" / "qemu.conf", "a") as fh:
            fh.write(QEMU_EXTRA.format(address=self.address))
        host_key = self.dir / "ssh_host_ed25519_key"
        if not host_key.exists():
            run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    f"kvmlab-{self.name}",
                    "-f",
                    host_key,
                ]
            )
        (self.dir / "sshd_config").write_text(
            SSHD_CONFIG.format(
                name=self.name,
                listen=self.ssh_listen,
                host_key=host_key,
                pidfile=self.dir / "sshd.pid",
                authorized_keys=self.authorized_keys,
            )
        )

    def _define_default_pool(self) -> None:
        """Define/build/start/autostart the ``default`` dir pool the product expects."""
        if self.local_virsh("pool-info", "default").returncode != 0:
            self.local_virsh(
                "pool-define-as",
                "default",
                "dir",
                "--target",
                "/var/lib/libvirt/images",
                check=True,
            )
        self.local_virsh("pool-build", "default", check=False)
        info = self.local_virsh("pool-info", "default").stdout
        if not re.search(r"State:\s+running", info):
            self.local_virsh("pool-start", "default", check=True)
        self.local_virsh("pool-autostart", "default", check=True)


def _cpu_seconds(stat: Path) -> float | None:
    """User + system CPU seconds of the process whose ``/proc/PID/stat`` this is."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
