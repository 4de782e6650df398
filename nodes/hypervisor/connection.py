"""Opening, reusing and reopening libvirt connections, always in bounded time.

One connection per URI per process. A host that is down or drops packets must
not hang a worker: before libvirt starts ssh we probe the TCP port with a short
timeout, ssh itself gets ``ConnectTimeout`` from our ssh_config, the handshake
is bounded by a watchdog, and open connections use libvirt keepalive so a peer
that vanishes later is detected.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import libvirt
from django.conf import settings

from nodes.hypervisor import sshconfig
from nodes.hypervisor.errors import HypervisorError
from nodes.validators import ParsedURI, parse_node_uri

log = logging.getLogger(__name__)

KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3
# libvirt errors that mean the connection itself is gone, not the call.
_CONNECTION_ERRORS = frozenset(
    {
        libvirt.VIR_ERR_SYSTEM_ERROR,
        libvirt.VIR_ERR_RPC,
        libvirt.VIR_ERR_NO_CONNECT,
        libvirt.VIR_ERR_INVALID_CONN,
        libvirt.VIR_ERR_AUTH_FAILED,
    }
)


class _Pool:
    """Per-process connections; a forked child starts with an empty pool."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections: dict[str, libvirt.virConnect] = {}
        self.pid = os.getpid()
        self.event_loop_started = False


_pool = _Pool()


def _ignore_libvirt_stderr(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; we raise ours instead."""


def _ensure_event_loop() -> None:
    # Keepalive needs a running event loop. Started on first use, never at import.
    if _pool.event_loop_started:
        return
    libvirt.registerErrorHandler(_ignore_libvirt_stderr, None)
    libvirt.virEventRegisterDefaultImpl()

    def run() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()

    threading.Thread(target=run, name="libvirt-events", daemon=True).start()
    _pool.event_loop_started = True


def libvirt_uri_for(uri: str) -> str:
    """The URI to hand libvirt or a libvirt tool (virt-install, virsh) for a node URI.

    For ssh it adds our wrapper so the tool gets the same timeouts and pinned keys.
    """
    return _libvirt_uri(parse_node_uri(uri, resolve=False), uri)


def _libvirt_uri(parsed: ParsedURI, uri: str) -> str:
    """The URI handed to libvirt: for ssh, run ssh through our wrapper and config."""
    if not parsed.is_remote:
        return uri
    wrapper = sshconfig.ensure_wrapper()
    return f"{uri}?command={quote(str(wrapper), safe='/')}&no_tty=1"


def _probe_tcp(parsed: ParsedURI, timeout: float) -> None:
    port = parsed.port or 22
    try:
        with socket.create_connection((parsed.host, port), timeout=timeout):
            return
    except TimeoutError as exc:
        reason = f"no answer within {timeout:g} s"
        raise HypervisorError(
            f"{parsed.host}:{port} is unreachable ({reason}).", retryable=True
        ) from exc
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise HypervisorError(
            f"{parsed.host}:{port} is unreachable ({reason}).", retryable=True
        ) from exc


def answers(uri: str, timeout: float = 1.5) -> bool:
    """Whether a node's ssh port accepts a TCP connection now (local URIs: always).

    For quick decisions where a call on a cached connection to a node whose link
    was just cut would hang until libvirt's keepalive gives up.
    """
    parsed = parse_node_uri(uri, resolve=False)
    if not parsed.is_remote:
        return True
    try:
        _probe_tcp(parsed, timeout)
    except HypervisorError:
        return False
    return True


def _open_bounded(libvirt_uri: str, display_uri: str, timeout: float) -> libvirt.virConnect:
    """Open in a helper thread so a host that accepts TCP but never answers cannot hang us."""
    result: dict[str, object] = {}
    abandoned = threading.Event()

    def target() -> None:
        try:
            conn = libvirt.open(libvirt_uri)
        except libvirt.libvirtError as exc:
            result["error"] = exc
            return
        if abandoned.is_set():
            conn.close()
            return
        result["conn"] = conn

    thread = threading.Thread(target=target, name="libvirt-open", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        abandoned.set()
        raise HypervisorError(
            f"{display_uri}: the host accepted the connection but libvirt did not answer "
            f"within {timeout:g} s.",
            retryable=True,
        )
    if "error" in result:
        raise translate_error(result["error"], display_uri)  # type: ignore[arg-type]
    return result["conn"]  # type: ignore[return-value]


def translate_error(exc: libvirt.libvirtError, uri: str) -> HypervisorError:
    """Turn a libvirt error into ours, with a message an admin can act on."""
    message = (str(exc) or exc.get_error_message() or "unknown libvirt error").strip()
    code = exc.get_error_code()
    retryable = code in _CONNECTION_ERRORS or code == libvirt.VIR_ERR_OPERATION_TIMEOUT
    if "Host key verification failed" in message or "REMOTE HOST IDENTIFICATION" in message:
        message = (
            f"the host key of {uri} does not match the pinned one in "
            f"{settings.KVMMGR_SSH_KNOWN_HOSTS}; if the host was reinstalled, remove its line there"
        )
        retryable = False
    elif "Permission denied" in message:
        message = (
            f"ssh refused the manager's key ({settings.KVMMGR_SSH_KEY}); add its public key "
            "to the node's authorized_keys (manage.py sshkey prints it)"
        )
        retryable = False
    return HypervisorError(f"{uri}: {message}", retryable=retryable, uri=uri)


def _open(uri: str) -> libvirt.virConnect:
    parsed = parse_node_uri(uri, resolve=False)
    timeout = settings.KVMMGR_CONNECT_TIMEOUT
    if parsed.is_remote:
        _probe_tcp(parsed, timeout)
    _ensure_event_loop()
    # The ssh handshake and libvirt's hello take a few round trips after TCP is up.
    conn = _open_bounded(_libvirt_uri(parsed, uri), uri, timeout * 4)
    if parsed.is_remote:
        try:
            conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
        except libvirt.libvirtError:
            log.warning("keepalive not supported on %s", uri)
    return conn


def _get(uri: str) -> libvirt.virConnect:
    with _pool.lock:
        if _pool.pid != os.getpid():
            # Forked: the parent's sockets are not ours to use or close.
            _pool.connections.clear()
            _pool.pid = os.getpid()
            _pool.event_loop_started = False
        conn = _pool.connections.get(uri)
        if conn is not None:
            try:
                alive = conn.isAlive() == 1
            except libvirt.libvirtError:
                alive = False
            if alive:
                return conn
            _discard_locked(uri)
    conn = _open(uri)
    with _pool.lock:
        existing = _pool.connections.get(uri)
        if existing is not None:
            conn.close()
            return existing
        _pool.connections[uri] = conn
    return conn


def _discard_locked(uri: str) -> None:
    conn = _pool.connections.pop(uri, None)
    if conn is not None:
        try:
            conn.close()
        except libvirt.libvirtError:
            pass


def discard(uri: str) -> None:
    """Forget a connection so the next use reopens it."""
    with _pool.lock:
        _discard_locked(uri)


def close_all() -> None:
    with _pool.lock:
        for uri in list(_pool.connections):
            _discard_locked(uri)


@contextmanager
def connection_for(uri: str) -> Iterator[libvirt.virConnect]:
    """Yield a live connection; libvirt errors inside become ``HypervisorError``.

    A connection-level failure drops the cached connection so the next call
    reopens it instead of failing forever.
    """
    conn = _get(uri)
    try:
        yield conn
    except libvirt.libvirtError as exc:
        error = translate_error(exc, uri)
        if error.retryable:
            discard(uri)
        raise error from exc
