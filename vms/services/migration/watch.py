"""Watches that end a live migration which can no longer succeed.

libvirt and QEMU can go on waiting for a very long time when the other end of a
migration is gone: a cut link or a dead tunnel (nothing moves), or a destination
qemu that died (crashed, killed, out of memory) while the source still thinks it is
copying. Each watch turns one of these into a clear reason, the job aborts the
migration with it, and the VM stays on the source.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from nodes.hypervisor import HypervisorError
from nodes.hypervisor import migration_prep as prep

log = logging.getLogger(__name__)

MIB = 1024 * 1024


class MigrationStalled(HypervisorError):
    """No data moved towards the destination for longer than the stall timeout."""


class DestinationLost(HypervisorError):
    """The destination's incoming copy of the VM vanished during the migration."""


@dataclass
class StallWatch:
    """Notices a migration that stopped moving data (a cut link, a dead tunnel).

    The job gives up after ``timeout_s`` seconds without a single byte moved, so
    the VM's fate is decided (it stays on the source) while the admin still looks.
    """

    timeout_s: float
    last_bytes: int = -1
    last_change_s: float = 0.0

    def observe(self, elapsed_s: float, data_processed: int) -> str:
        """Returns why the migration counts as stalled, or ''."""
        if data_processed != self.last_bytes:
            self.last_bytes, self.last_change_s = data_processed, elapsed_s
            return ""
        idle = elapsed_s - self.last_change_s
        if idle < self.timeout_s:
            return ""
        return (
            f"no data moved for {idle:.0f} s (stall timeout {self.timeout_s:g} s) after "
            f"{data_processed // MIB} MiB: the link to the destination is down or blocked"
        )


class DestinationWatch:
    """Notices the destination's incoming domain dying mid-migration.

    Seen in the lab: with the destination qemu SIGKILLed during the disk copy, the
    destination libvirtd logs "shutting down, reason=crashed" at once, but the
    source keeps its migration job open and only the stall timeout ended it. This
    watch asks the destination every ``interval_s`` seconds whether the incoming
    domain runs. It does not run (gone, or kept inactive while libvirt unwinds)
    before libvirt has prepared it, so "not running" counts as lost only once it
    was seen running, or when asked after data began to flow (libvirt starts the
    incoming qemu before the first byte moves; a copy that dies within a second
    may never be seen running). It asks from its own thread, so a destination that
    stopped answering never delays the poller: the stall watch covers that case.
    """

    def __init__(self, dest_uri: str, uuid: str, describe: str, interval_s: float = 1.0) -> None:
        self._dest_uri = dest_uri
        self._uuid = uuid
        self._describe = describe
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._copying = threading.Event()
        self._thread = threading.Thread(target=self._run, name="destination-watch", daemon=True)
        self.seen = False
        self.lost = ""

    def __enter__(self) -> DestinationWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()

    def copying_started(self) -> None:
        """The source reported data moved: the destination's domain must run now."""
        self._copying.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            armed = self.seen or self._copying.is_set()
            try:
                running = bool(prep.domain_is_active(self._dest_uri, self._uuid))
            except HypervisorError as exc:
                log.debug("destination watch: %s", exc)
            else:
                if running:
                    self.seen = True
                elif armed and not self._stop.is_set():
                    self.lost = self._describe
                    return
            self._stop.wait(self._interval_s)


def destination_lost_reason(dest_name: str, domain_name: str) -> str:
    return (
        f"the incoming copy of {domain_name} on {dest_name} is gone: its qemu process "
        f"exited (crashed, was killed, or ran out of memory on {dest_name}; "
        f"/var/log/libvirt/qemu/{domain_name}.log there says why)"
    )
