"""Node-to-node SSH trust for peer-to-peer migration.

With ``--p2p`` the source node's libvirtd opens the destination URI itself, over
ssh, as root on the source. Each node therefore gets, under ``NODE_DIR``:
its own migration key (generated on the node: private keys never travel), a
known_hosts file with its peers' host keys pinned at their migration
addresses, an ssh_config (connect timeout, keepalive, strict host keys) and a
two-line wrapper libvirt runs as ssh (URI parameter ``command=``). Each node's
public migration key is authorized on every other node. Nothing here turns
host-key checking off.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodes.hypervisor.errors import HypervisorError
from nodes.models import Node
from nodes.remote import RemoteNode, open_remote
from nodes.services import hostkeys
from nodes.validators import validate_host

NODE_DIR = "/etc/libvirt/kvmmgr"
KEY = f"{NODE_DIR}/migration_key"
KNOWN_HOSTS = f"{NODE_DIR}/known_hosts"
SSH_CONFIG = f"{NODE_DIR}/ssh_config"
WRAPPER = f"{NODE_DIR}/kvmmgr-ssh"
MARKER = "kvmmgr-migration"

SSH_CONFIG_TEXT = f"""# Written by kvmmgr for peer-to-peer migration; changes are overwritten.
Host *
    IdentityFile {KEY}
    IdentitiesOnly yes
    UserKnownHostsFile {KNOWN_HOSTS}
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
    ConnectTimeout 3
    ServerAliveInterval 5
    ServerAliveCountMax 3
    LogLevel ERROR
"""

WRAPPER_TEXT = f"""#!/bin/sh
# Written by kvmmgr: libvirtd runs this as ssh for peer-to-peer migration.
exec ssh -F {SSH_CONFIG} "$@"
"""


@dataclass(frozen=True)
class NodeIdentity:
    node: Node
    migration_pubkey: str
    host_key_line: str  # "<keytype> <base64>"


def peer_uri(dest: Node) -> str:
    """The URI a source node's libvirtd uses to reach ``dest`` for p2p migration.

    Built from the peer path only (migration address, migration ssh port): the
    manager's path (the URI's host and port, often a router's port forward) is
    not where peers find the node.
    """
    address = dest.effective_migration_address
    host = f"[{address}]" if ":" in address else address
    port = dest.effective_migration_ssh_port
    port_part = f":{port}" if port != 22 else ""
    user = f"{dest.migration_ssh_user}@" if dest.migration_ssh_user else ""
    return f"qemu+ssh://{user}{host}{port_part}/system?command={WRAPPER}&no_tty=1"


def display_peer_uri(dest: Node) -> str:
    """The same URI without our parameters, for the equivalent virsh command."""
    return peer_uri(dest).split("?", 1)[0]


def known_hosts_name(node: Node) -> str:
    """The name peers' ssh looks the node's host key up by: its peer path."""
    address = node.effective_migration_address
    port = node.effective_migration_ssh_port
    if port != 22:
        return f"[{address}]:{port}"
    return address


def _identity(remote: RemoteNode, node: Node) -> NodeIdentity:
    remote.ensure_dir(NODE_DIR, 0o700)
    if remote.read_file(f"{KEY}.pub") is None:
        result = remote.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                key_comment(node.name),
                "-f",
                KEY,
            ]
        )
        if not result.ok:
            raise HypervisorError(f"{node.name}: ssh-keygen failed: {result.stderr.strip()}")
    pubkey = (remote.read_file(f"{KEY}.pub") or "").strip()
    host_key = remote.host_key
    return NodeIdentity(node, pubkey, f"{host_key.get_name()} {host_key.get_base64()}")


def _authorized_keys_path(remote: RemoteNode) -> str:
    home = remote.run(["sh", "-c", 'printf %s "$HOME"']).stdout.strip() or "/root"
    ssh_dir = f"{home}/.ssh"
    remote.ensure_dir(ssh_dir, 0o700)
    return f"{ssh_dir}/authorized_keys"


def key_comment(name: str) -> str:
    """The comment a node's migration key carries (set when the key is made)."""
    return f"{MARKER}@{name}"


def _is_key_of(line: str, comments: set[str], blobs: set[str]) -> bool:
    fields = line.split()
    return len(fields) >= 2 and (fields[1] in blobs or " ".join(fields[2:]) in comments)


def _authorize(remote: RemoteNode, peers: list[NodeIdentity], forget: set[str]) -> None:
    """Authorize the peers' current migration keys; drop any other key of theirs (a key
    they replaced) and the keys of the nodes named in ``forget``."""
    path = _authorized_keys_path(remote)
    old = (remote.read_file(path) or "").splitlines()
    comments = {key_comment(name) for name in forget}
    comments |= {key_comment(peer.node.name) for peer in peers}
    blobs = {peer.migration_pubkey.split()[1] for peer in peers if peer.migration_pubkey}
    lines = [line for line in old if not _is_key_of(line, comments, blobs)]
    lines += [peer.migration_pubkey for peer in peers if peer.migration_pubkey]
    if lines != old:
        remote.write_file(path, "\n".join(lines) + "\n", 0o600)


def _drop_known_hosts(current: str, names: set[str]) -> str:
    """``current`` without the lines for ``names``."""
    kept = [line for line in current.splitlines() if line.split(" ", 1)[0] not in names]
    return "".join(f"{line}\n" for line in kept)


def _merge_known_hosts(current: str, entries: dict[str, str]) -> str:
    """``current`` with the lines for ``entries``' names replaced by the given ones."""
    kept = _drop_known_hosts(current, set(entries))
    return kept + "".join(f"{name} {key}\n" for name, key in entries.items())


def establish(nodes: list[Node]) -> list[str]:
    """Install migration trust among ``nodes`` (all remote); returns what it did.

    A peer's key that changed since it was last authorized is replaced, not added
    beside the old one (keys are known by their ``kvmmgr-migration@NAME`` comment).
    """
    if len(nodes) < 2:
        return []
    identities: dict[int, NodeIdentity] = {}
    for node in nodes:
        with open_remote(node.name, node.uri) as remote:
            identities[node.pk] = _identity(remote, node)
    report = []
    for node in nodes:
        peers = [identities[other.pk] for other in nodes if other.pk != node.pk]
        entries = {known_hosts_name(peer.node): peer.host_key_line for peer in peers}
        with open_remote(node.name, node.uri) as remote:
            remote.write_file(SSH_CONFIG, SSH_CONFIG_TEXT, 0o600)
            remote.write_file(WRAPPER, WRAPPER_TEXT, 0o700)
            known = _merge_known_hosts(remote.read_file(KNOWN_HOSTS) or "", entries)
            remote.write_file(KNOWN_HOSTS, known, 0o600)
            _authorize(remote, peers, set())
        report.append(f"{node.name}: trusts {', '.join(p.node.name for p in peers)}")
    return report


def forget(name: str, known_name: str, peers: list[Node]) -> list[str]:
    """Remove node ``name``'s migration key and its host-key line from each of ``peers``."""
    report = []
    for peer in peers:
        with open_remote(peer.name, peer.uri) as remote:
            _authorize(remote, [], {name})
            current = remote.read_file(KNOWN_HOSTS)
            if current is not None:
                kept = _drop_known_hosts(current, {known_name})
                if kept != current:
                    remote.write_file(KNOWN_HOSTS, kept, 0o600)
        report.append(f"{peer.name}: key removed")
    return report


def unconfirmed(*nodes: Node) -> list[Node]:
    """The nodes whose host key no admin has confirmed (or whose pinned key changed)."""
    return [node for node in nodes if not hostkeys.trust_confirmed(node)]


def unconfirmed_failure(nodes: list[Node]) -> str:
    names = " and ".join(node.name for node in nodes)
    commands = "; ".join(f"manage.py trustnode {node.name}" for node in nodes)
    return (
        f"Peer-to-peer migration needs ssh trust between the two nodes, and it is installed "
        f"only for nodes whose host key an admin confirmed; {names} "
        f"{'is' if len(nodes) == 1 else 'are'} not confirmed. Compare the fingerprint with "
        f"the node's own (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` there) and "
        f"confirm it on the node's page or with: {commands}"
    )


@dataclass(frozen=True)
class Preflight:
    """What the source node found when it tried the destination the way migration will."""

    hostname: str  # the destination's libvirt hostname, or "" when unreachable
    error: str  # why the source could not open the destination's libvirt
    port_answers: bool | None  # None: not probed

    @property
    def ok(self) -> bool:
        return bool(self.hostname) and not self.error


def preflight(source: Node, dest: Node, port: int | None = None) -> Preflight:
    """In one ssh session to ``source``: open ``dest``'s libvirt over the peer URI,
    and optionally knock on ``dest``'s migration ``port``.

    A refused connection on the port proves the path is open; silence means a
    firewall or no route, which would stall a migration.
    """
    address = dest.effective_migration_address
    validate_host(address, resolve=False)  # it goes into a remote bash -c script
    with open_remote(source.name, source.uri) as remote:
        result = remote.run(
            ["timeout", "15", "virsh", "-c", peer_uri(dest), "hostname"], timeout=20
        )
        port_answers = None
        if port is not None and result.ok:
            knock = remote.run(
                ["timeout", "3", "bash", "-c", f"exec 3<>/dev/tcp/{address}/{int(port)}"],
                timeout=10,
            )
            port_answers = knock.ok or "refused" in knock.stderr.lower()
    if not result.ok:
        reason = (result.stderr or result.stdout).strip() or f"exit status {result.exit_status}"
        return Preflight("", reason, None)
    return Preflight(result.stdout.strip(), "", port_answers)


def peer_path_failure(source: Node, dest: Node, error: str) -> str:
    """Why ``source`` cannot use ``dest``'s peer path, and which setting decides it."""
    return (
        f"{source.name} cannot reach {dest.name}'s libvirt over the peer path "
        f"{dest.peer_path} (its migration address and migration ssh port) for peer-to-peer "
        f"migration: {error}. Peers do not use the manager's path ({dest.uri}); fix the "
        f"peer path with `manage.py editnode {dest.name} --migration-address ADDRESS "
        f"--migration-ssh-port PORT` or on the node's edit page"
    )


def ensure(source: Node, dest: Node, port: int | None = None) -> tuple[Preflight, list[str]]:
    """Check the path; install trust only if the check fails, then check again.

    Trust is installed when nodes are added; re-installing it on every migration
    would cost several ssh round trips for nothing.
    """
    first = preflight(source, dest, port)
    if first.ok:
        return first, []
    missing = unconfirmed(source, dest)
    if missing:
        raise HypervisorError(unconfirmed_failure(missing))
    report = establish([source, dest])
    second = preflight(source, dest, port)
    if not second.ok:
        raise HypervisorError(peer_path_failure(source, dest, second.error), retryable=True)
    return second, [f"installed after: {first.error}", *report]
