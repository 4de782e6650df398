from __future__ import annotations

import pytest

from vms.services.migration.convergence import (
    ActionKind,
    ConvergencePolicy,
    Sample,
    TimeoutPolicy,
    downtime_budget,
)

MIB = 1024 * 1024


def _run(policy: ConvergencePolicy, samples: list[Sample]) -> list:
    actions = []
    for sample in samples:
        actions.extend(policy.observe(sample))
    return actions


def test_ladder_is_geometric_and_ends_at_max() -> None:
    policy = ConvergencePolicy(initial_downtime_ms=50, max_downtime_ms=800, steps=4)
    assert policy.downtime_ladder() == [50, 100, 200, 400, 800]
    assert policy.start()[0].downtime_ms == 50


def test_converging_migration_is_left_alone() -> None:
    policy = ConvergencePolicy(window_s=2)
    samples = [Sample(t * 0.5, (400 - 20 * t) * MIB, t) for t in range(20)]
    assert _run(policy, samples) == []


def test_stalled_migration_raises_downtime_step_by_step() -> None:
    policy = ConvergencePolicy(initial_downtime_ms=50, max_downtime_ms=500, steps=5, window_s=3)
    # Dirtying as fast as it copies: remaining memory stays at ~100 MiB for 40 s.
    samples = [Sample(t * 0.5, 100 * MIB - (t % 2) * MIB, t // 4) for t in range(80)]
    actions = _run(policy, samples)
    downtimes = [a.downtime_ms for a in actions if a.kind == ActionKind.SET_DOWNTIME]
    assert downtimes == policy.downtime_ladder()[1:]
    assert downtimes == sorted(downtimes) and downtimes[-1] == 500
    assert "not converging" in actions[0].reason
    # Raises are at least one window apart.
    times = [s.elapsed_s for s in policy.samples]
    assert len(times) == 80


@pytest.mark.parametrize(
    ("policy_kind", "postcopy", "expected"),
    [
        (TimeoutPolicy.ABORT, False, ActionKind.ABORT),
        (TimeoutPolicy.PAUSE, False, ActionKind.PAUSE),
        (TimeoutPolicy.POSTCOPY, True, ActionKind.START_POSTCOPY),
    ],
)
def test_timeout_policy_applies_once(
    policy_kind: TimeoutPolicy, postcopy: bool, expected: ActionKind
) -> None:
    policy = ConvergencePolicy(
        completion_timeout_s=10, timeout_policy=policy_kind, postcopy_allowed=postcopy
    )
    samples = [Sample(t, 100 * MIB, t) for t in range(15)]
    actions = [a for a in _run(policy, samples) if a.kind != ActionKind.SET_DOWNTIME]
    assert [a.kind for a in actions] == [expected]
    assert "completion timeout of 10 s" in actions[0].reason


def test_invalid_policies_are_refused() -> None:
    with pytest.raises(ValueError):
        ConvergencePolicy(initial_downtime_ms=0)
    with pytest.raises(ValueError):
        ConvergencePolicy(initial_downtime_ms=600, max_downtime_ms=500)
    with pytest.raises(ValueError):
        ConvergencePolicy(timeout_policy=TimeoutPolicy.POSTCOPY, postcopy_allowed=False)


def test_a_slow_link_keeps_part_of_the_downtime_budget_for_the_hand_over() -> None:
    # A fast link: QEMU may take the whole budget, and nothing is said.
    assert downtime_budget(500, "") == (500, "")
    assert downtime_budget(20, "") == (50, "")
    # A slow one: QEMU's copy gets 40 % of it (never below 50 ms), and the job says why.
    qemu, why = downtime_budget(500, "node2 is reached through VPN tunnel t1")
    assert qemu == 200
    assert "200 ms of the 500 ms budget (node2 is reached through VPN tunnel t1" in why
    assert downtime_budget(100, "the bandwidth is capped at 10 MiB/s")[0] == 50
    policy = ConvergencePolicy(initial_downtime_ms=50, max_downtime_ms=qemu)
    assert policy.downtime_ladder()[-1] == 200
