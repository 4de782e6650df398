"""The options of one migration as a job stores them (validated by ``vms.forms.migrate``)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from vms.choices import MediaRemedy
from vms.services.migration import features as mf
from vms.services.migration.convergence import TimeoutPolicy

MIGRATION_PORT = 49152


MIB = 1024 * 1024


@dataclass(frozen=True)
class MigrationOptions:
    """Per-job options, stored as ``asdict(options)`` in ``Job.params`` (keys must not change).

    Built by ``MigrationOptionsForm.options()`` before a job exists.
    """

    bandwidth_mib_s: int = 0
    max_downtime_ms: int = 500
    auto_converge: bool = False
    # auto | none | zstd | zlib | xbzrle (vms.services.migration.features)
    compression: str = "auto"
    postcopy: bool = False
    completion_timeout_s: int = 300
    stall_timeout_s: int = 30
    timeout_policy: str = TimeoutPolicy.ABORT
    keep_source_disks: bool = False
    parallel_connections: int = 0
    sync_writes: bool = False
    check_only: bool = False
    # What to do with media the destination lacks (vms.choices.MediaRemedy).
    media: str = MediaRemedy.REFUSE


def wanted(options: MigrationOptions) -> mf.Wanted:
    return mf.Wanted(
        options.compression, options.parallel_connections, options.postcopy, options.sync_writes
    )


def options_from(params: dict[str, Any]) -> MigrationOptions:
    return MigrationOptions(
        **{f.name: params[f.name] for f in fields(MigrationOptions) if f.name in params}
    )
