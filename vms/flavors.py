"""Flavors: named vCPU / memory / disk templates offered when creating a VM.

Kept in code (not a table) while they are a handful of defaults; values typed
explicitly in the form or on the command line override the flavor's.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Flavor:
    name: str
    vcpus: int
    memory_mib: int
    disk_gib: int

    @property
    def label(self) -> str:
        return f"{self.name} ({self.vcpus} vCPU, {self.memory_mib} MiB, {self.disk_gib} GiB)"


FLAVORS: dict[str, Flavor] = {
    flavor.name: flavor
    for flavor in (
        Flavor("tiny", 1, 512, 5),
        Flavor("small", 1, 2048, 20),
        Flavor("medium", 2, 4096, 40),
        Flavor("large", 4, 8192, 80),
    )
}


def get_flavor(name: str) -> Flavor | None:
    return FLAVORS.get(name)
