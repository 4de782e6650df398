"""The options of one migration: the one schema for the page, ``migratevm`` and the API.

The form yields ``MigrationOptions``, the dataclass a job stores as its params
(``asdict``): field names here are those params' keys and must not change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, ClassVar

from django import forms
from django.core.exceptions import ValidationError

from kvmmgr.inputs.fields import Choice, Flag, WholeNumber, errors_of, truthy
from vms.choices import MediaRemedy
from vms.services.migration.convergence import TimeoutPolicy
from vms.services.migration.features import COMPRESSION_CHOICES
from vms.services.migration.options import MigrationOptions

D = MigrationOptions  # the defaults


class MigrationOptionsForm(forms.Form):
    """Every option an admin may set, with its range, choices and cross-field rules."""

    #: CLI spellings older than the generated ``--field-name`` flags, kept as aliases.
    cli_aliases: ClassVar[dict[str, str]] = {
        "bandwidth_mib_s": "--bandwidth",
        "max_downtime_ms": "--max-downtime",
        "compression": "--compress",
        "parallel_connections": "--parallel",
        "completion_timeout_s": "--timeout",
        "stall_timeout_s": "--stall-timeout",
        "check_only": "--check",
    }
    #: The yes/no "compressed" of older callers meant libvirt's default method, XBZRLE.
    legacy_compressed = "compressed"

    bandwidth_mib_s = WholeNumber(
        noun="Bandwidth (MiB/s)",
        label="Bandwidth limit (MiB/s, 0: none)",
        low=0,
        high=100_000,
        default=D.bandwidth_mib_s,
    )
    max_downtime_ms = WholeNumber(
        noun="Max downtime (ms)",
        label="Max downtime (ms)",
        low=10,
        high=60_000,
        default=D.max_downtime_ms,
        help_text="The job starts at 50 ms and raises the target step by step up to this "
        "while the copy does not converge.",
    )
    completion_timeout_s = WholeNumber(
        noun="Completion timeout (s)",
        label="Completion timeout (s)",
        low=10,
        high=86_400,
        default=D.completion_timeout_s,
    )
    stall_timeout_s = WholeNumber(
        noun="Stall timeout (s)",
        label="Stall timeout (s)",
        low=5,
        high=3_600,
        default=D.stall_timeout_s,
        help_text="give up when no data moved for this long (a cut link or a VPN down)",
    )
    timeout_policy = Choice(
        label="At the completion timeout",
        choices=[(p.value, p.value) for p in TimeoutPolicy],
        default=D.timeout_policy,
        normalize=None,
        message="Timeout policy must be one of {choices}.",
        help_text="abort the migration, pause the guest, or switch to post-copy",
    )
    parallel_connections = WholeNumber(
        noun="Parallel connections",
        label="Parallel connections (0: one)",
        low=0,
        high=16,
        default=D.parallel_connections,
    )
    sync_writes = Flag(
        label="synchronous disk writes (the guest's disk writes reach the destination before "
        "they complete: the disk copy converges for busy disks)"
    )
    auto_converge = Flag(
        label="auto-converge (throttle the guest's CPU when it dirties memory too fast)"
    )
    compression = Choice(
        label="Compression",
        choices=[(c, c) for c in COMPRESSION_CHOICES],
        default=D.compression,
        message="Compression must be one of {choices} (got {value!r}).",
        help_text="auto: over a slow link (a tunnel, or a bandwidth cap up to 125 MiB/s) "
        "xbzrle, which sends only the changes of pages sent before, or zstd when parallel "
        "connections are asked for and both nodes have it (libvirt 9.4 or later); else none. "
        "zstd and zlib run over parallel connections (2 unless set).",
    )
    postcopy = Flag(label="allow post-copy")
    keep_source_disks = Flag(label="keep the source disk copies")
    media = Choice(
        label="Media the destination lacks",
        choices=MediaRemedy.choices,
        default=D.media,
        message="Media must be one of {choices} (got {value!r}).",
        help_text="CD-ROM and floppy images and read-only disks stay behind in a migration: "
        "the pre-checks look for them on the destination (same path and size); 'eject' takes "
        "them out for the move, 'copy' copies them to the destination's pool first. A copy "
        "is removed again if the migration fails.",
    )
    check_only = Flag(label="pre-checks only (dry run)")

    def __init__(self, data: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if data is not None:
            data = dict(data.items())  # one value per key, also from a QueryDict
            legacy = data.pop(self.legacy_compressed, False)
            if truthy(legacy) and data.get("compression") in (None, ""):
                data["compression"] = "xbzrle"
        super().__init__(data, **kwargs)

    def clean_max_downtime_ms(self) -> int:
        value: int = self.cleaned_data["max_downtime_ms"]
        if value < 50:
            raise ValidationError("Max downtime below 50 ms never converges; use 50 or more.")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        policy, postcopy = data.get("timeout_policy"), data.get("postcopy", False)
        if policy == TimeoutPolicy.POSTCOPY and not postcopy:
            self.add_error(
                "timeout_policy", "Switching to post-copy on timeout needs post-copy enabled."
            )
        compression = data.get("compression")
        if compression is None:
            pass  # already refused
        elif postcopy and compression not in ("auto", "none"):
            self.add_error("compression", "libvirt refuses compression together with post-copy.")
        elif compression == "xbzrle" and data.get("parallel_connections"):
            self.add_error(
                "compression",
                "Parallel connections carry only zstd or zlib compression, not xbzrle.",
            )
        return data

    def options(self) -> MigrationOptions:
        """The validated options; raises ``ValidationError`` per field when not valid."""
        if not self.is_valid():
            raise errors_of(self)
        return MigrationOptions(**{f.name: self.cleaned_data[f.name] for f in fields(D)})


def migration_options(data: Mapping[str, Any]) -> MigrationOptions:
    """Options from a plain mapping (an evacuation's stored options, a script, a bench).

    Unlike a page or an API body, such a mapping holds nothing but options, so an
    unknown key is a typo and refused.
    """
    known = {*MigrationOptionsForm.base_fields, MigrationOptionsForm.legacy_compressed}
    unknown = set(data) - known
    if unknown:
        raise ValidationError(f"unknown migration options: {', '.join(sorted(unknown))}")
    return MigrationOptionsForm(data).options()
