"""When a live migration does not converge: raise the downtime target, then act.

A pre-copy migration converges when the memory left to copy can be sent within
the allowed downtime. A guest that dirties memory faster than the link drains
it never gets there. Like Nova and Proxmox, we start with a low downtime target
(short pause for the guest) and raise it step by step while the migration makes
no headway; when the completion timeout passes, the timeout policy decides:
abort (the VM stays on the source), pause the guest so the copy can finish, or
switch to post-copy.

This module is pure logic over a sequence of job-stat samples, so it is tested
with made-up sequences; the migration job applies the actions it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class TimeoutPolicy(StrEnum):
    ABORT = "abort"
    PAUSE = "pause"
    POSTCOPY = "postcopy"


class ActionKind(StrEnum):
    SET_DOWNTIME = "set_downtime"
    PAUSE = "pause"
    START_POSTCOPY = "start_postcopy"
    ABORT = "abort"


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    downtime_ms: int = 0
    reason: str = ""


#: Over a slow link, the share of the downtime budget that QEMU's final memory copy
#: may take. The guest stays paused after that copy while the disk mirror completes
#: and the destination takes over, a few round trips across the link that QEMU's
#: target does not count: on a 100 Mbit/s, 20 ms link a busy guest given the whole
#: 500 ms was paused 894-1,365 ms, given 200 ms about 500 ms (docs/benchmarks.md).
SLOW_LINK_QEMU_SHARE = 0.4
MIN_DOWNTIME_MS = 50


def downtime_budget(max_downtime_ms: int, slow_link: str) -> tuple[int, str]:
    """QEMU's downtime target ceiling for a budget, and why it is lower when it is.

    ``slow_link`` says why the link counts as slow ("" when it does not); only then
    is part of the budget kept for what follows QEMU's copy.
    """
    budget = max(max_downtime_ms, MIN_DOWNTIME_MS)
    if not slow_link:
        return budget, ""
    qemu = max(MIN_DOWNTIME_MS, round(budget * SLOW_LINK_QEMU_SHARE))
    return qemu, (
        f"downtime: QEMU's final memory copy may take {qemu} ms of the {budget} ms budget "
        f"({slow_link}: the disk mirror's completion and the hand-over to the destination "
        "cross the link after it, with the guest still paused)"
    )


@dataclass(frozen=True)
class Sample:
    """What the policy needs from one poll of the migration's job stats."""

    elapsed_s: float
    memory_remaining: int
    iteration: int = 0


@dataclass
class ConvergencePolicy:
    """Raises the downtime target while a migration stalls, then applies the timeout policy.

    ``steps`` raises go from ``initial_downtime_ms`` to ``max_downtime_ms``
    geometrically. A migration "stalls" when, over ``window_s`` seconds, the
    memory still to copy did not shrink by at least ``min_progress`` (a fraction).
    Raises are spaced at least ``window_s`` apart so each can take effect.
    """

    initial_downtime_ms: int = 50
    max_downtime_ms: int = 500
    steps: int = 5
    window_s: float = 3.0
    min_progress: float = 0.1
    completion_timeout_s: float = 300.0
    timeout_policy: TimeoutPolicy = TimeoutPolicy.ABORT
    postcopy_allowed: bool = False
    samples: list[Sample] = field(default_factory=list)
    current_downtime_ms: int = 0
    last_raise_s: float = 0.0
    timed_out: bool = False

    def __post_init__(self) -> None:
        if self.initial_downtime_ms <= 0 or self.max_downtime_ms < self.initial_downtime_ms:
            raise ValueError("downtimes must satisfy 0 < initial <= max")
        if self.steps < 1:
            raise ValueError("steps must be at least 1")
        if self.timeout_policy == TimeoutPolicy.POSTCOPY and not self.postcopy_allowed:
            raise ValueError("the post-copy timeout policy needs post-copy enabled")
        self.current_downtime_ms = self.initial_downtime_ms

    def downtime_ladder(self) -> list[int]:
        """The downtime targets, from the first to the last, in milliseconds."""
        ratio = (self.max_downtime_ms / self.initial_downtime_ms) ** (1 / self.steps)
        ladder = [round(self.initial_downtime_ms * ratio**i) for i in range(self.steps + 1)]
        ladder[-1] = self.max_downtime_ms
        return ladder

    def start(self) -> list[Action]:
        """The action to apply before the migration starts: the first downtime target."""
        return [Action(ActionKind.SET_DOWNTIME, self.initial_downtime_ms, "initial target")]

    def _stalled(self, now: Sample) -> bool:
        window_start = [s for s in self.samples if now.elapsed_s - s.elapsed_s >= self.window_s]
        if not window_start:
            return False
        before = window_start[-1]
        if before.memory_remaining <= 0:
            return False
        shrunk = (before.memory_remaining - now.memory_remaining) / before.memory_remaining
        return shrunk < self.min_progress

    def observe(self, sample: Sample) -> list[Action]:
        """Feed one stats sample; returns what to do now (usually nothing)."""
        self.samples.append(sample)
        if self.timed_out:
            return []
        if sample.elapsed_s >= self.completion_timeout_s:
            self.timed_out = True
            return [self._timeout_action(sample)]
        if (
            self.current_downtime_ms < self.max_downtime_ms
            and sample.elapsed_s - self.last_raise_s >= self.window_s
            and self._stalled(sample)
        ):
            ladder = self.downtime_ladder()
            higher = [step for step in ladder if step > self.current_downtime_ms]
            self.current_downtime_ms = higher[0]
            self.last_raise_s = sample.elapsed_s
            return [
                Action(
                    ActionKind.SET_DOWNTIME,
                    self.current_downtime_ms,
                    f"not converging after {sample.elapsed_s:.0f} s "
                    f"({sample.memory_remaining // (1024 * 1024)} MiB left)",
                )
            ]
        return []

    def _timeout_action(self, sample: Sample) -> Action:
        reason = f"completion timeout of {self.completion_timeout_s:g} s reached"
        if self.timeout_policy == TimeoutPolicy.PAUSE:
            return Action(ActionKind.PAUSE, reason=reason + ": pausing the guest to finish")
        if self.timeout_policy == TimeoutPolicy.POSTCOPY:
            return Action(ActionKind.START_POSTCOPY, reason=reason + ": switching to post-copy")
        return Action(ActionKind.ABORT, reason=reason + ": aborting, the VM stays on the source")
