"""SSH to nodes for work that is not libvirt's: the only module that imports paramiko.

Used to install node-to-node migration trust and to test, from a node, that it
reaches a peer. Commands are built as argument lists and quoted with
``shlex.join`` for the remote shell; host keys are checked against the
manager's pinned known_hosts (first contact pins, a changed key is refused),
the same file the libvirt ssh wrapper uses.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paramiko
from django.conf import settings

from nodes.hypervisor.errors import HypervisorError
from nodes.validators import parse_node_uri


@dataclass(frozen=True)
class RemoteResult:
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class _PinNewHostKeys(paramiko.MissingHostKeyPolicy):
    """Accept and record a host key on first contact (like ``accept-new``)."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self.known_hosts.open("a", encoding="utf-8") as handle:
            handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)


class RemoteNode:
    """An open SSH session to one node."""

    def __init__(self, client: paramiko.SSHClient, name: str) -> None:
        self.client = client
        self.name = name

    @property
    def host_key(self) -> paramiko.PKey:
        transport = self.client.get_transport()
        assert transport is not None
        return transport.get_remote_server_key()

    def run(self, argv: Sequence[str], *, timeout: float = 30.0, stdin: str = "") -> RemoteResult:
        command = shlex.join(argv)
        try:
            channel_in, channel_out, channel_err = self.client.exec_command(
                command, timeout=timeout
            )
            if stdin:
                channel_in.write(stdin)
            channel_in.channel.shutdown_write()
            out = channel_out.read().decode(errors="replace")
            err = channel_err.read().decode(errors="replace")
            status = channel_out.channel.recv_exit_status()
        except (OSError, paramiko.SSHException) as exc:
            raise HypervisorError(
                f"{self.name}: {argv[0]} failed over ssh: {exc}", retryable=True
            ) from exc
        return RemoteResult(status, out, err)

    @contextmanager
    def _sftp(self, what: str) -> Iterator[paramiko.SFTPClient]:
        try:
            with self.client.open_sftp() as sftp:
                yield sftp
        except (OSError, paramiko.SSHException) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise HypervisorError(
                f"{self.name}: could not {what} over sftp ({exc}); the node's sshd needs "
                "the sftp subsystem",
                retryable=True,
            ) from exc

    def read_file(self, path: str) -> str | None:
        with self._sftp(f"read {path}") as sftp:
            try:
                with sftp.open(path, "r") as handle:
                    return handle.read().decode()
            except FileNotFoundError:
                return None

    def write_file(self, path: str, content: str, mode: int) -> None:
        """Write atomically with ``mode`` set before any content lands."""
        tmp = f"{path}.kvmmgr-tmp"
        with self._sftp(f"write {path}") as sftp:
            with sftp.open(tmp, "w") as handle:
                handle.chmod(mode)
                handle.write(content.encode())
            sftp.posix_rename(tmp, path)

    def open_tcp(self, host: str, port: int, *, timeout: float = 5.0) -> paramiko.Channel:
        """A TCP connection opened *from the node* (ssh ``direct-tcpip``); socket-like.

        Lets the manager talk to services bound to a node's loopback (OpenVPN's
        management interface) without exposing them on the network.
        """
        transport = self.client.get_transport()
        if transport is None:
            raise HypervisorError(f"{self.name}: the ssh session is closed", retryable=True)
        try:
            channel = transport.open_channel(
                "direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout
            )
        except (OSError, paramiko.SSHException) as exc:
            raise HypervisorError(
                f"{self.name}: nothing answers on {host}:{port} ({exc})", retryable=True
            ) from exc
        channel.settimeout(timeout)
        return channel

    def ensure_dir(self, path: str, mode: int) -> None:
        with self._sftp(f"create {path}") as sftp:
            try:
                info = sftp.stat(path)
            except FileNotFoundError:
                sftp.mkdir(path, mode)
                sftp.chmod(path, mode)
                return
            if not stat.S_ISDIR(info.st_mode or 0):
                raise HypervisorError(f"{self.name}: {path} exists and is not a directory")
            sftp.chmod(path, mode)


@contextmanager
def open_remote(name: str, uri: str) -> Iterator[RemoteNode]:
    """SSH to the node behind a ``qemu+ssh`` URI with the manager's key, in bounded time."""
    parsed = parse_node_uri(uri, resolve=False)
    if not parsed.is_remote:
        raise HypervisorError(f"{name}: {uri} is not a qemu+ssh node; nothing to reach over ssh")
    client = paramiko.SSHClient()
    known_hosts = Path(settings.KVMMGR_SSH_KNOWN_HOSTS)
    if known_hosts.exists():
        client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(_PinNewHostKeys(known_hosts))
    timeout = settings.KVMMGR_CONNECT_TIMEOUT
    try:
        client.connect(
            parsed.host,
            port=parsed.port or 22,
            username=parsed.user or "root",
            key_filename=str(settings.KVMMGR_SSH_KEY),
            look_for_keys=False,
            allow_agent=False,
            timeout=timeout,
            banner_timeout=timeout * 4,
            auth_timeout=timeout * 4,
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HypervisorError(
            f"{name}: the host key of {parsed.host} does not match the pinned one in "
            f"{known_hosts}; if the host was reinstalled, remove its line there"
        ) from exc
    except paramiko.AuthenticationException as exc:
        client.close()
        raise HypervisorError(
            f"{name}: ssh refused the manager's key ({settings.KVMMGR_SSH_KEY})"
        ) from exc
    except (TimeoutError, OSError, paramiko.SSHException) as exc:
        client.close()
        raise HypervisorError(
            f"{name}: {parsed.host} is unreachable over ssh ({exc})", retryable=True
        ) from exc
    try:
        yield RemoteNode(client, name)
    finally:
        client.close()


# The key a fingerprint is shown for when a host has several pinned.
_KEY_PREFERENCE = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ssh-rsa")


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's notation: ``SHA256:`` and unpadded base64 of the key blob's digest."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def pinned_fingerprint(uri: str) -> str:
    """The fingerprint of the host key the manager pinned for a qemu+ssh ``uri``, or ""
    when it has not reached that host yet. Reads the known_hosts file only (paramiko
    and OpenSSH write the same one; hashed names are looked up too)."""
    parsed = parse_node_uri(uri, resolve=False)
    path = Path(settings.KVMMGR_SSH_KNOWN_HOSTS)
    if not parsed.is_remote or not path.exists():
        return ""
    port = parsed.port or 22
    name = parsed.host if port == 22 else f"[{parsed.host}]:{port}"
    found = paramiko.HostKeys(str(path)).lookup(name)
    if not found:
        return ""
    order = sorted(
        found.keys(),
        key=lambda t: _KEY_PREFERENCE.index(t) if t in _KEY_PREFERENCE else len(_KEY_PREFERENCE),
    )
    return fingerprint(found[order[0]])
