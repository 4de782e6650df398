"""Entry point run *inside* a node's fresh mount + UTS namespace.

``LabNode`` starts this as
``ip netns exec kvmlab-NAME unshare --mount --uts --propagation private --
python -m tests.lab._node_init --name NAME --dir DIR``. It exists so that the
bind mounts and daemon starts happen in the new namespace without any shell
strings. It exits once the daemons have daemonized; the mount namespace lives
on as long as they (and the qemu processes libvirtd spawns) run, and dies with
them, so nothing ever needs unmounting from the root namespace.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
from pathlib import Path

#: Private per-node directory -> the system path it is bind-mounted over.
BIND_MOUNTS = {
    "etc": "/etc/libvirt",
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
    # Each node has its own root ~/.ssh, as a real host would: authorized_keys,
    # known_hosts and the keys node-to-node (peer-to-peer) migration uses.
    "rootssh": "/root/.ssh",
    # OpenVPN config and runtime (pidfile, log) are per host too (vpn app).
    "openvpn": "/etc/openvpn",
    "openvpnrun": "/run/openvpn",
}

DAEMON_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
}


def _call(args: list[str], log: Path, timeout: float) -> None:
    """Run one daemon start command, logging to a file.

    Output goes to a file, never a pipe: daemons that inherit a pipe would keep
    the parent's ``communicate()`` waiting forever.
    """
    with open(log, "ab") as out:
        out.write(f"--- {args}\n".encode())
        out.flush()
        subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=DAEMON_ENV,
            timeout=timeout,
            check=True,
        )


def main() -> None:
    """Bind the node's private dirs, set the hostname, start virtlogd, libvirtd, sshd."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--dir", required=True, type=Path)
    args = parser.parse_args()
    node_dir: Path = args.dir

    for sub, target in BIND_MOUNTS.items():
        Path(target).mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "--bind", str(node_dir / sub), target], check=True, timeout=30)
    # Files, not directories: the node's /etc/hosts and /etc/resolv.conf.
    for name in ("hosts", "resolv.conf"):
        if (node_dir / name).exists():
            subprocess.run(
                ["mount", "--bind", str(node_dir / name), f"/etc/{name}"], check=True, timeout=30
            )
    socket.sethostname(args.name)
    # sshd insists on its privilege-separation directory.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    (node_dir / "mntns").write_text(os.readlink("/proc/self/ns/mnt"))

    log = node_dir / "daemons.log"
    _call(["/usr/sbin/virtlogd", "-d", "-p", str(node_dir / "virtlogd.pid")], log, 60)
    _call(["/usr/sbin/libvirtd", "-d", "-p", str(node_dir / "libvirtd.pid")], log, 120)
    _call(
        ["/usr/sbin/sshd", "-f", str(node_dir / "sshd_config"), "-E", str(node_dir / "sshd.log")],
        log,
        60,
    )


if __name__ == "__main__":
    main()
