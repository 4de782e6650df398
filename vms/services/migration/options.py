"""The options of one migration: what an admin may ask for, validated before a job exists."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from django.core.exceptions import ValidationError

from vms.choices import MediaRemedy
from vms.services.migration import features as mf
from vms.services.migration.convergence import TimeoutPolicy
from vms.services.migration.features import COMPRESSION_CHOICES

MIGRATION_PORT = 49152


MIB = 1024 * 1024


@dataclass(frozen=True)
class MigrationOptions:
    """Per-job options; validated by ``parse_options`` before a job exists."""

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


def _int(
    data: dict[str, Any], key: str, label: str, *, low: int, high: int, errors: dict[str, str]
) -> int:
    raw = data.get(key)
    default = getattr(MigrationOptions, key)
    if raw in (None, ""):
        return default
    try:
        value = int(str(raw).strip())
    except ValueError:
        errors[key] = f"{label} must be a whole number (got {raw!r})."
        return default
    if not low <= value <= high:
        errors[key] = f"{label} must be between {low} and {high} (got {value})."
    return value


def _bool(data: dict[str, Any], key: str) -> bool:
    raw = data.get(key, getattr(MigrationOptions, key))
    if isinstance(raw, bool):
        return raw
    return str(raw).strip().lower() in {"1", "true", "on", "yes"}


def parse_options(data: dict[str, Any]) -> MigrationOptions:
    """Validate options from a form or the CLI; raises ``ValidationError`` per field."""
    data = dict(data)
    # The older yes/no "compressed" meant libvirt's default method, XBZRLE.
    legacy = data.pop("compressed", False)
    legacy_compressed = legacy is True or str(legacy).strip().lower() in {"1", "true", "on", "yes"}
    if legacy_compressed and data.get("compression") in (None, ""):
        data["compression"] = "xbzrle"
    unknown = set(data) - {f.name for f in fields(MigrationOptions)}
    if unknown:
        raise ValidationError(f"unknown migration options: {', '.join(sorted(unknown))}")
    errors: dict[str, str] = {}
    options = MigrationOptions(
        bandwidth_mib_s=_int(
            data, "bandwidth_mib_s", "Bandwidth (MiB/s)", low=0, high=100_000, errors=errors
        ),
        max_downtime_ms=_int(
            data, "max_downtime_ms", "Max downtime (ms)", low=10, high=60_000, errors=errors
        ),
        auto_converge=_bool(data, "auto_converge"),
        compression=str(data.get("compression") or MigrationOptions.compression).strip().lower(),
        postcopy=_bool(data, "postcopy"),
        completion_timeout_s=_int(
            data,
            "completion_timeout_s",
            "Completion timeout (s)",
            low=10,
            high=86_400,
            errors=errors,
        ),
        stall_timeout_s=_int(
            data, "stall_timeout_s", "Stall timeout (s)", low=5, high=3_600, errors=errors
        ),
        timeout_policy=str(data.get("timeout_policy") or TimeoutPolicy.ABORT),
        keep_source_disks=_bool(data, "keep_source_disks"),
        parallel_connections=_int(
            data, "parallel_connections", "Parallel connections", low=0, high=16, errors=errors
        ),
        sync_writes=_bool(data, "sync_writes"),
        check_only=_bool(data, "check_only"),
        media=str(data.get("media") or MediaRemedy.REFUSE).strip().lower(),
    )
    if options.media not in MediaRemedy.values:
        errors["media"] = (
            f"Media must be one of {', '.join(v for v in MediaRemedy.values if v)} "
            f"(got {options.media!r})."
        )
    if options.timeout_policy not in TimeoutPolicy.__members__.values():
        errors["timeout_policy"] = (
            f"Timeout policy must be one of {', '.join(p.value for p in TimeoutPolicy)}."
        )
    elif options.timeout_policy == TimeoutPolicy.POSTCOPY and not options.postcopy:
        errors["timeout_policy"] = "Switching to post-copy on timeout needs post-copy enabled."
    if options.compression not in COMPRESSION_CHOICES:
        errors["compression"] = (
            f"Compression must be one of {', '.join(COMPRESSION_CHOICES)} "
            f"(got {options.compression!r})."
        )
    elif options.postcopy and options.compression not in ("auto", "none"):
        errors["compression"] = "libvirt refuses compression together with post-copy."
    elif options.compression == "xbzrle" and options.parallel_connections:
        errors["compression"] = (
            "Parallel connections carry only zstd or zlib compression, not xbzrle."
        )
    if options.max_downtime_ms < 50 and "max_downtime_ms" not in errors:
        errors["max_downtime_ms"] = "Max downtime below 50 ms never converges; use 50 or more."
    if errors:
        raise ValidationError(errors)
    return options


def wanted(options: MigrationOptions) -> mf.Wanted:
    return mf.Wanted(
        options.compression, options.parallel_connections, options.postcopy, options.sync_writes
    )


def options_from(params: dict[str, Any]) -> MigrationOptions:
    return MigrationOptions(
        **{f.name: params[f.name] for f in fields(MigrationOptions) if f.name in params}
    )
