"""worse_after: each reason a rollout halts for, with its numbers; quiet when nothing changed."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from fleet.health import Baseline, HealthSample, Observations, WorseLimits, worse_after
from tests.fleet_health.support import HOUR, baseline

UPDATE = 1_700_000_000_000
LIMITS = WorseLimits()


def reports(
    start: int, hours: int, *, volts_per_h: float = 0.01, **fields: Any
) -> tuple[HealthSample, ...]:
    """One report an hour from ``start``: boot 7, no errors, the battery draining slowly."""
    values: dict[str, Any] = {"boot_count": 7, "sensor_errors": {}}
    values.update(fields)
    return tuple(
        HealthSample(at_ms=start + h * HOUR, battery=4.0 - volts_per_h * h, **values)
        for h in range(hours + 1)
    )


BEFORE = Observations(
    start_ms=UPDATE - 24 * HOUR,
    end_ms=UPDATE,
    last_seen_ms=UPDATE - 30_000,
    health=reports(UPDATE - 24 * HOUR, 24),
    baselines={"temperature": baseline(25.0, 2.0), "battery": baseline(3.9, 0.1)},
)
AFTER = Observations(
    start_ms=UPDATE,
    end_ms=UPDATE + 6 * HOUR,
    last_seen_ms=UPDATE + 6 * HOUR - 30_000,
    health=reports(UPDATE, 6),
    baselines={"temperature": baseline(26.0, 2.0, count=30), "battery": baseline(3.88, 0.1, 30)},
)


def after(**changes: Any) -> Observations:
    return dataclasses.replace(AFTER, **changes)


def kinds(before: Observations, after: Observations) -> list[str]:
    return [r.kind for r in worse_after(before, after, LIMITS)]


def test_no_change_is_not_worse() -> None:
    assert worse_after(BEFORE, AFTER, LIMITS) == []


def test_silence_at_the_end_of_the_soak() -> None:
    assert kinds(BEFORE, after(last_seen_ms=AFTER.end_ms - 899_000)) == []
    reasons = worse_after(BEFORE, after(last_seen_ms=AFTER.end_ms - 900_000), LIMITS)
    assert [r.kind for r in reasons] == ["silence"]
    assert reasons[0].detail == {"silent_s": 900.0, "silent_limit_s": 900}


def test_a_board_never_heard_after_is_silent_once() -> None:
    reasons = worse_after(BEFORE, after(last_seen_ms=None, health=(), baselines={}), LIMITS)
    assert [r.kind for r in reasons] == ["silence"]
    assert reasons[0].detail["silent_s"] == 6 * 3600


def test_a_board_already_silent_before_is_not_worse_for_it() -> None:
    silent = dataclasses.replace(BEFORE, last_seen_ms=UPDATE - HOUR)
    assert kinds(silent, after(last_seen_ms=AFTER.end_ms - HOUR)) == []


def test_a_quantity_no_longer_reported() -> None:
    reasons = worse_after(BEFORE, after(baselines={"battery": baseline(3.9, 0.1, 30)}), LIMITS)
    assert [r.kind for r in reasons] == ["silence"]
    assert reasons[0].detail == {"quantity": "temperature", "before_count": 100}


@pytest.mark.parametrize(("mean", "worse"), [(31.0, False), (31.01, True), (18.99, True)])
def test_implausible_mean_against_the_boards_own_baseline(mean: float, worse: bool) -> None:
    shifted = after(baselines={**AFTER.baselines, "temperature": baseline(mean, 2.0, 30)})
    reasons = worse_after(BEFORE, shifted, LIMITS)
    assert [r.kind for r in reasons] == (["implausible"] if worse else [])
    if worse:
        assert reasons[0].detail["quantity"] == "temperature"
        assert reasons[0].detail["mean_before"] == 25.0


def test_implausible_values_outside_the_physical_range() -> None:
    spike = Baseline.of([25.0, 26.0, 90.0])
    reasons = worse_after(
        BEFORE, after(baselines={**AFTER.baselines, "temperature": spike}), LIMITS
    )
    assert [r.kind for r in reasons] == ["implausible"]
    assert reasons[0].detail["max"] == 90.0
    assert reasons[0].detail["high"] == 85.0


def test_faster_battery_drain() -> None:
    # Before: 0.01 V/h. After: 0.03 is within the margin, 0.035 is not.
    assert kinds(BEFORE, after(health=reports(UPDATE, 6, volts_per_h=0.029))) == []
    reasons = worse_after(BEFORE, after(health=reports(UPDATE, 6, volts_per_h=0.035)), LIMITS)
    assert [r.kind for r in reasons] == ["battery_drain"]
    assert reasons[0].detail["drain_after_v_per_h"] == pytest.approx(0.035)
    assert reasons[0].detail["drain_before_v_per_h"] == pytest.approx(0.01)


def test_more_reboots_than_before() -> None:
    one = (*AFTER.health[:3], *reports(UPDATE + 3 * HOUR, 3, boot_count=8))
    assert kinds(BEFORE, after(health=one)) == []
    two = (*AFTER.health[:3], *reports(UPDATE + 3 * HOUR, 3, boot_count=9))
    reasons = worse_after(BEFORE, after(health=two), LIMITS)
    assert [r.kind for r in reasons] == ["reboots"]
    assert reasons[0].detail == {"after": 2, "before": 0, "expected": 0.0, "allowed": 1}


def test_reboots_are_compared_with_the_rate_before() -> None:
    # Four boots a day before (a board on a weak supply) predicts one in six hours.
    boots = tuple(
        dataclasses.replace(s, boot_count=7 + i // 6) for i, s in enumerate(BEFORE.health)
    )
    rebooting = dataclasses.replace(BEFORE, health=boots)
    two = (*AFTER.health[:3], *reports(UPDATE + 3 * HOUR, 3, boot_count=9))
    assert kinds(rebooting, after(health=two)) == []


def test_more_sensor_errors_than_before() -> None:
    def errors(n: int) -> tuple[HealthSample, ...]:
        return (
            *AFTER.health[:6],
            dataclasses.replace(AFTER.health[6], sensor_errors={"bme280": {"timeout": n}}),
        )

    assert kinds(BEFORE, after(health=errors(3))) == []
    reasons = worse_after(BEFORE, after(health=errors(4)), LIMITS)
    assert [r.kind for r in reasons] == ["sensor_errors"]
    assert reasons[0].detail["after"] == 4


def test_limits_from_a_rollouts_limits() -> None:
    limits = WorseLimits.from_rollout(
        {"failures": 0.1, "confirm_s": 600, "silent_s": 60, "reboots": 0}
    )
    assert (limits.silent_s, limits.reboots) == (60, 0)
