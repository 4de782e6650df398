"""The one error type the adapter raises."""

from __future__ import annotations


class HypervisorError(Exception):
    """A hypervisor operation failed; ``message`` is meant for an admin to read.

    ``retryable`` says whether trying again later may help (a host that is down
    or a dropped connection) as opposed to a refusal that will not change.
    """

    def __init__(self, message: str, *, retryable: bool = False, uri: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.uri = uri

    def __str__(self) -> str:
        return self.message
