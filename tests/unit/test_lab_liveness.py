"""The lab's stall retry: one more run with a fresh guest on a stall, never on anything else."""

from __future__ import annotations

import pytest

from tests.lab.liveness import GuestStalled, retry_if_guest_stalled


def test_a_stall_runs_the_scenario_once_more() -> None:
    attempts: list[int] = []

    def scenario(attempt: int) -> str:
        attempts.append(attempt)
        if attempt == 1:
            raise GuestStalled("frozen")
        return "done"

    assert retry_if_guest_stalled(scenario) == "done"
    assert attempts == [1, 2]


def test_a_stall_on_every_attempt_fails() -> None:
    attempts: list[int] = []

    def scenario(attempt: int) -> None:
        attempts.append(attempt)
        raise GuestStalled(f"frozen {attempt}")

    with pytest.raises(GuestStalled, match="frozen 2"):
        retry_if_guest_stalled(scenario)
    assert attempts == [1, 2]


def test_any_other_failure_is_not_retried() -> None:
    attempts: list[int] = []

    def scenario(attempt: int) -> None:
        attempts.append(attempt)
        raise AssertionError("lost 3 lines")

    with pytest.raises(AssertionError, match="lost 3 lines"):
        retry_if_guest_stalled(scenario)
    assert attempts == [1]
