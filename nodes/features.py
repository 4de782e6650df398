"""Which migration features a node offers, decided from its libvirt and QEMU versions.

A fleet may mix Debian 12 nodes (libvirt 9.0, QEMU 7.2) with Debian 13 ones (or
Debian 12 with bookworm-backports: libvirt 11.3, QEMU 10.0). A migration may use a
feature only when both of its ends have it. libvirt's domain capabilities do not
list migration capabilities, so each feature is decided from the version in which
libvirt (the API and its typed parameters) and QEMU (the migration capability)
first offered it. This module is plain data, free of libvirt, so models, forms and
templates may use it; the adapter fills a node's facts with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Version = tuple[int, int, int]


@dataclass(frozen=True)
class Feature:
    key: str
    label: str
    libvirt: Version
    qemu: Version
    why: str


# Ordered as shown on the node page and by checknode.
FEATURES: tuple[Feature, ...] = (
    Feature(
        "zstd",
        "zstd multifd compression",
        (9, 4, 0),
        (5, 0, 0),
        "VIR_MIGRATE_PARAM_COMPRESSION=zstd with parallel connections: libvirt 9.4",
    ),
    Feature(
        "zlib",
        "zlib multifd compression",
        (9, 4, 0),
        (5, 0, 0),
        "VIR_MIGRATE_PARAM_COMPRESSION=zlib with parallel connections: libvirt 9.4",
    ),
    Feature(
        "parallel",
        "parallel connections",
        (5, 2, 0),
        (4, 0, 0),
        "VIR_MIGRATE_PARALLEL (QEMU multifd): libvirt 5.2, QEMU 4.0",
    ),
    Feature(
        "postcopy",
        "post-copy",
        (1, 3, 3),
        (2, 5, 0),
        "VIR_MIGRATE_POSTCOPY: libvirt 1.3.3, QEMU 2.5",
    ),
    Feature(
        "xbzrle",
        "XBZRLE compression",
        (1, 0, 3),
        (1, 2, 0),
        "VIR_MIGRATE_COMPRESSED (xbzrle, libvirt's default method)",
    ),
    Feature(
        "sync_writes",
        "synchronous disk writes",
        (8, 0, 0),
        (4, 2, 0),
        "VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES (write-blocking mirror): libvirt 8.0",
    ),
)
BY_KEY = {feature.key: feature for feature in FEATURES}
# The multifd compression methods, best first: what "auto" picks from.
MULTIFD_METHODS = ("zstd", "zlib")


def parse_version(text: str | None) -> Version | None:
    """``"11.3.0"`` or ``"QEMU 10.0.2"`` -> ``(11, 3, 0)``; None when there is none."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not match:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


def features_for(libvirt_version: str | None, qemu_version: str | None) -> list[str]:
    """The migration features (keys of ``FEATURES``) a node with these versions offers.

    Without a QEMU version (libvirt's test driver, another hypervisor) there are none.
    """
    libvirt = parse_version(libvirt_version)
    qemu = parse_version(qemu_version)
    if libvirt is None or qemu is None:
        return []
    return [f.key for f in FEATURES if libvirt >= f.libvirt and qemu >= f.qemu]


def qemu_version_of(facts: dict[str, object]) -> str:
    """The QEMU version in a node's facts ("" when the node is not a QEMU host).

    Facts read before QEMU's version had its own field carry it in
    ``hypervisor_version`` ("QEMU 7.2.0").
    """
    stored = facts.get("qemu_version")
    if isinstance(stored, str):
        return stored
    hypervisor = str(facts.get("hypervisor_version") or "")
    if hypervisor.upper().startswith("QEMU "):
        version = parse_version(hypervisor)
        if version:
            return ".".join(map(str, version))
    return ""


def features_of(facts: dict[str, object]) -> list[str]:
    """A node's migration features from its stored facts (recomputed for old facts)."""
    stored = facts.get("migration_features")
    if isinstance(stored, list):
        return [str(key) for key in stored if key in BY_KEY]
    return features_for(str(facts.get("libvirt_version") or ""), qemu_version_of(facts))


def labels(keys: list[str]) -> list[str]:
    return [BY_KEY[key].label for key in keys if key in BY_KEY]
