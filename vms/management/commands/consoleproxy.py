from __future__ import annotations

import logging
import os
import sys
from argparse import ArgumentParser
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from vms import consoleproxy


def _detach(pidfile: Path, logfile: Path) -> None:
    """Become a daemon (as ``celery --detach`` does): double fork, own session, output
    to ``logfile``, our PID in ``pidfile`` once we are the process that serves."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    log = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    pidfile.write_text(f"{os.getpid()}\n")


class Command(BaseCommand):
    help = (
        "Run the console proxy: browser consoles (noVNC websockets, behind nginx at "
        "/websockify) to VM displays, through the manager's ssh path to each node."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--listen", default=settings.KVMMGR_CONSOLE_LISTEN)
        parser.add_argument("--port", type=int, default=settings.KVMMGR_CONSOLE_PORT)
        parser.add_argument(
            "--detach", action="store_true", help="run in the background (needs --pidfile)"
        )
        parser.add_argument("--pidfile", type=Path)
        parser.add_argument("--logfile", type=Path, default=Path(os.devnull))

    def handle(self, *args: object, **opts: object) -> None:
        port = int(opts["port"])  # type: ignore[call-overload]
        if not 1 <= port <= 65535:
            raise CommandError(f"--port {port}: not a port")
        if opts["detach"]:
            if not opts["pidfile"]:
                raise CommandError("--detach needs --pidfile")
            _detach(opts["pidfile"], opts["logfile"])  # type: ignore[arg-type]
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        consoleproxy.serve(str(opts["listen"]), port)
