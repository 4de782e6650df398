"""What submitting or running a job raises."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobs.models import Job


class JobConflict(Exception):
    """The target already has an active job."""

    def __init__(self, message: str, active: Job | None) -> None:
        super().__init__(message)
        self.active = active


class JobAborted(Exception):
    """Raised inside a handler when an admin asked to abort."""


class JobFailed(Exception):
    """A handler's expected failure: ``message`` becomes the job's error, with no traceback.

    Apps may also register their own error types as expected failures
    (``registry.register_expected_failure``), e.g. the hypervisor adapter's error.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownJobKind(LookupError):
    """No app registered this job kind (its app is not installed, or a typo)."""

    def __init__(self, kind: str) -> None:
        super().__init__(
            f"no job kind {kind!r} is registered (an app registers its kinds in "
            "AppConfig.ready() with jobs.registry.register)"
        )
        self.kind = kind
