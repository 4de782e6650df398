"""Which migration features a job may use: only those both of its nodes have.

Nodes on Debian 12's own packages (libvirt 9.0, QEMU 7.2) and on Debian 13's
(libvirt 11.3, QEMU 10.0) share a fleet; ``nodes.features`` says what each
version offers. A feature the admin asks for by name is refused when either end
lacks it (before a job exists, from the nodes' stored facts; again in the job,
from versions read afresh). Compression "auto" (the default) picks XBZRLE over a
slow link (zstd multifd when the admin asked for parallel connections), and
nothing otherwise: compressing costs CPU and gains only where the link, not the
CPU, limits the copy. Over a 100 Mbit/s, 20 ms link (docs/benchmarks.md) zstd
multifd cut an idle guest's copy to 0.7-0.8x raw but paused guests 340-1,400 ms at
the switch-over; XBZRLE paused them 240-390 ms and copied busy guests in 0.3-0.75x of
zstd's time.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodes import features as nf
from nodes.models import Node
from nodes.services import links

COMPRESSION_CHOICES = ("auto", "none", "zstd", "zlib", "xbzrle")
# What "parallel connections" means when the admin left it at 0 but multifd
# compression needs some: libvirt's own default.
DEFAULT_PARALLEL = 2
# A bandwidth cap at or below this (MiB/s, ~1 Gbit/s) marks the link as slow.
SLOW_LINK_MIB_S = 125


@dataclass(frozen=True)
class Endpoint:
    """One end of a migration as far as features go."""

    name: str
    libvirt_version: str
    qemu_version: str
    features: frozenset[str]

    @classmethod
    def from_facts(cls, node: Node) -> Endpoint:
        facts = node.facts or {}
        return cls(
            node.name,
            str(facts.get("libvirt_version") or ""),
            nf.qemu_version_of(facts),
            frozenset(nf.features_of(facts)),
        )

    @property
    def known(self) -> bool:
        return bool(self.libvirt_version)

    def versions(self) -> str:
        qemu = f"QEMU {self.qemu_version}" if self.qemu_version else "no QEMU"
        return f"libvirt {self.libvirt_version or '?'}, {qemu}"

    def describe(self) -> str:
        have = ", ".join(k for k in (f.key for f in nf.FEATURES) if k in self.features)
        return f"{self.name}: {self.versions()} ({have or 'no migration features known'})"


@dataclass(frozen=True)
class FeaturePlan:
    """What the migration will use; ``notes`` say why something was left out."""

    compression: str = ""
    parallel_connections: int = 0
    postcopy: bool = False
    sync_writes: bool = False
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        used = []
        if self.compression in nf.MULTIFD_METHODS:
            used.append(
                f"{self.compression} multifd compression over "
                f"{self.parallel_connections} parallel connections"
            )
        else:
            if self.compression:
                used.append(f"{self.compression} compression")
            if self.parallel_connections:
                used.append(f"{self.parallel_connections} parallel connections")
        if self.postcopy:
            used.append("post-copy allowed")
        if self.sync_writes:
            used.append("synchronous disk writes")
        return ", ".join(used) or "none (plain pre-copy)"


@dataclass(frozen=True)
class Wanted:
    """What the admin asked for (the job's options that depend on node features)."""

    compression: str = "auto"
    parallel_connections: int = 0
    postcopy: bool = False
    sync_writes: bool = False

    def features(self) -> list[str]:
        """The features (keys of ``nodes.features.FEATURES``) asked for by name."""
        keys: list[str] = []
        if self.compression in nf.MULTIFD_METHODS:
            keys += [self.compression, "parallel"]
        elif self.compression == "xbzrle":
            keys.append("xbzrle")
        if self.parallel_connections and "parallel" not in keys:
            keys.append("parallel")
        if self.postcopy:
            keys.append("postcopy")
        if self.sync_writes:
            keys.append("sync_writes")
        return keys


def missing_features(wanted: Wanted, source: Endpoint, dest: Endpoint) -> dict[str, str]:
    """Per requested feature missing on an end: a message that says where and why.

    An end whose versions are not known yet (facts never read) is not judged here;
    the job reads the versions itself and judges again.
    """
    problems: dict[str, str] = {}
    for key in wanted.features():
        lacking = [e for e in (source, dest) if e.known and key not in e.features]
        if not lacking:
            continue
        feature = nf.BY_KEY[key]
        needs = f"libvirt {'.'.join(map(str, feature.libvirt))} and QEMU " + ".".join(
            map(str, feature.qemu)
        )
        where = "; ".join(f"{e.name} has {e.versions()}" for e in lacking)
        problems[key] = (
            f"{feature.label} needs {needs} or later on both nodes ({where}): "
            "it cannot be used for this migration"
        )
    return problems


def plan_features(
    wanted: Wanted, source: Endpoint, dest: Endpoint, *, slow_link: str = ""
) -> FeaturePlan:
    """The features to use, given explicit requests already checked by ``missing_features``.

    ``slow_link`` says why the link counts as slow ("" when it does not): only then
    does compression "auto" compress.
    """
    compression, parallel = wanted.compression, wanted.parallel_connections
    notes: list[str] = []
    method = "" if compression in ("auto", "none") else compression
    if compression == "auto":
        if wanted.postcopy:
            notes.append("compression: none (post-copy is allowed; it excludes compression)")
        elif not slow_link:
            notes.append("compression: none (no sign of a slow link)")
        elif parallel:
            method, note = _auto_multifd(source, dest, slow_link)
            notes.append(note)
        else:
            lacking = [e for e in (source, dest) if "xbzrle" not in e.features]
            if lacking:
                notes.append(
                    f"compression: none over {slow_link}: "
                    + "; ".join(f"{e.name} ({e.versions()}) has no XBZRLE" for e in lacking)
                )
            else:
                method = "xbzrle"
                notes.append(
                    f"compression: xbzrle (auto: {slow_link}; pages sent again go as their "
                    "changes, and unlike multifd zstd it adds nothing to the pause at the end)"
                )
    if method in nf.MULTIFD_METHODS and not parallel:
        parallel = DEFAULT_PARALLEL
    return FeaturePlan(method, parallel, wanted.postcopy, wanted.sync_writes, tuple(notes))


def _auto_multifd(source: Endpoint, dest: Endpoint, slow_link: str) -> tuple[str, str]:
    """Compression "auto" when the admin asked for parallel connections: zstd if both have it."""
    lacking = [e for e in (source, dest) if not {"zstd", "parallel"} <= e.features]
    if lacking:
        return "", f"compression: none over {slow_link}: " + "; ".join(
            f"{e.name} ({e.versions()}) has no zstd multifd compression" for e in lacking
        )
    return "zstd", f"compression: zstd (auto, over the parallel connections asked for; {slow_link})"


def slow_link_reason(bandwidth_mib_s: int, dest: Node) -> str:
    """Why the link to ``dest`` counts as slow, or "" when nothing says so."""
    if 0 < bandwidth_mib_s <= SLOW_LINK_MIB_S:
        return f"the bandwidth is capped at {bandwidth_mib_s} MiB/s"
    tunnel = links.overlay_of(dest.effective_migration_address)
    if tunnel:
        return f"{dest.name} is reached through VPN tunnel {tunnel}"
    return ""


def feature_labels(node: Node) -> str:
    """A node's versions and migration features in words, from its stored facts."""
    end = Endpoint.from_facts(node)
    if not end.known:
        return "versions not read yet"
    have = nf.labels([f.key for f in nf.FEATURES if f.key in end.features])
    return f"{end.versions()}: {', '.join(have) or 'no migration features known'}"


def shared_labels(source: Node, dest: Node) -> str:
    """What a migration between these two nodes may use, from their stored facts."""
    a, b = Endpoint.from_facts(source), Endpoint.from_facts(dest)
    if not (a.known and b.known):
        return "features checked when the job starts"
    shared = [f.key for f in nf.FEATURES if f.key in a.features & b.features]
    return "both have: " + (", ".join(nf.labels(shared)) or "no optional features")
