"""The console proxy: browser websockets (noVNC) to VM displays, through the manager.

Run as its own service (``manage.py consoleproxy``) behind nginx's basic auth at
``/websockify``. The websocket side is websockify's (as OpenStack's novncproxy);
this module adds the ticket check before the handshake and the way to the display:
for a ``qemu+ssh`` node an ssh ``direct-tcpip`` channel over the manager's own ssh
path (the same that reaches the node through a port forward or the tunnel) to the
display's address as seen from the node, usually its loopback; for the local node a
plain TCP connection. VNC never has to listen on a network address.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Iterator
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.db import close_old_connections
from websockify.websocketproxy import LibProxyServer, ProxyRequestHandler

from kvmmgr import audit
from kvmmgr.access import Actor
from kvmmgr.models import AuditResult
from nodes.hypervisor import HypervisorError
from nodes.remote import open_remote
from vms.services.console_tickets import ConsoleTarget, TicketRefused, redeem

logger = logging.getLogger(__name__)
CHUNK = 65536


@contextlib.contextmanager
def display_socket(target: ConsoleTarget) -> Iterator[socket.socket]:
    """A connected socket to the VM's display, however the node is reached."""
    if not target.through_ssh:
        with socket.create_connection((target.host, target.port), timeout=5) as sock:
            sock.settimeout(None)
            yield sock
        return
    with open_remote(target.node_name, target.node_uri) as remote:
        channel = remote.open_tcp(target.host, target.port)
        channel.settimeout(None)
        ours, theirs = socket.socketpair()
        stop = threading.Event()
        pump = threading.Thread(
            target=_pump, args=(theirs, channel, stop), name="console-ssh", daemon=True
        )
        pump.start()
        try:
            yield ours
        finally:
            stop.set()
            ours.close()
            pump.join(timeout=5)
            theirs.close()
            channel.close()


def _pump(sock: socket.socket, channel: Any, stop: threading.Event) -> None:
    """Copy bytes both ways between a local socket and an ssh channel until one ends."""
    try:
        while not stop.is_set():
            ready, _, _ = select.select([sock, channel], [], [], 0.5)
            if sock in ready:
                data = sock.recv(CHUNK)
                if not data:
                    break
                channel.sendall(data)
            if channel in ready:
                data = channel.recv(CHUNK)
                if not data:
                    break
                sock.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class ConsoleRequestHandler(ProxyRequestHandler):
    """Refuses (HTTP 403, before any websocket) a request without a good ticket."""

    console_target: ConsoleTarget | None = None

    def _client(self) -> str:
        # nginx passes the browser's address; a direct local client has its own.
        return self.headers.get("X-Real-IP") or self.client_address[0]

    def _session_key(self) -> str:
        cookie = SimpleCookie(self.headers.get("Cookie") or "")
        morsel = cookie.get(settings.SESSION_COOKIE_NAME)
        return morsel.value if morsel else ""

    def handle_upgrade(self) -> None:
        close_old_connections()
        token = parse_qs(urlsplit(self.path).query).get("token", [""])[0]
        try:
            self.console_target = redeem(
                token,
                session_key=self._session_key(),
                remote_user=self.headers.get("X-Remote-User"),
                origin=self.headers.get("Origin"),
                host=self.headers.get("Host"),
            )
        except TicketRefused as exc:
            logger.warning("console refused for %s: %s", self._client(), exc.message)
            audit.record(
                Actor(name=self.headers.get("X-Remote-User") or "anonymous", role="viewer",
                      source=self._client()),
                "vm.console",
                result=AuditResult.DENIED,
                detail=f"console connection refused: {exc.message}",
            )  # fmt: skip
            self.send_error(403, f"Console refused: {exc.message}")
            return
        finally:
            close_old_connections()
        super().handle_upgrade()

    def new_websocket_client(self) -> None:
        target = self.console_target
        assert target is not None  # set by handle_upgrade
        actor = Actor.for_user(target.user, source=self._client())
        where = f"{target.node_name} {target.host}:{target.port}"
        started = time.monotonic()
        try:
            with display_socket(target) as sock:
                audit.record(actor, "vm.console", target=target.vm_name, detail=f"opened ({where})")
                close_old_connections()
                self.do_proxy(sock)
        except HypervisorError as exc:
            audit.record(
                actor, "vm.console", target=target.vm_name, result=AuditResult.FAILED,
                detail=f"could not reach the display ({where}): {exc.message}",
            )  # fmt: skip
            raise self.CClose(1011, "The console is unreachable: " + exc.message[:80]) from exc
        except OSError as exc:
            audit.record(
                actor, "vm.console", target=target.vm_name, result=AuditResult.FAILED,
                detail=f"could not reach the display ({where}): {exc}",
            )  # fmt: skip
            raise self.CClose(1011, "The console is unreachable") from exc
        finally:
            seconds = time.monotonic() - started
            audit.record(
                actor, "vm.console.closed", target=target.vm_name,
                detail=f"closed after {seconds:.0f} s ({where})",
            )  # fmt: skip
            close_old_connections()


def serve(listen: str, port: int) -> None:
    """Serve until interrupted; one thread per console."""
    server = LibProxyServer(
        RequestHandlerClass=ConsoleRequestHandler, listen_host=listen, listen_port=port
    )
    logger.info("console proxy listening on %s:%s", listen, port)
    try:
        server.serve_forever()
    finally:
        server.server_close()
