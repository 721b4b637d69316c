"""Did a board's data get worse after an update? What halts a rollout.

:func:`worse_after` compares what the fleet saw of one board before its update with what it
saw after, each an :class:`Observations` of its own span, and gives the reasons it is worse,
each with its numbers; an empty list means no worse. Counts are compared as rates over each
span, so a short soak is not held against a long history:

- ``silence``: silent for ``silent_s`` or more at the end of the soak (and not already so
  before), or a quantity reported before and not since;
- ``implausible``: a quantity outside its physical range after, or its mean after more than
  ``implausible_k`` of the before standard deviations from its mean before;
- ``battery_drain``: the battery drains faster than ``drain_factor`` times before, and by
  more than ``drain_min_v_per_h``;
- ``reboots``: more boots than before's rate predicts, by more than ``reboots`` (the trial
  boot itself is not counted: ``after`` starts with the first report from the new release);
- ``sensor_errors``: more sensor errors than before's rate predicts, by ``sensor_errors``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fleet.health.model import Baseline, HealthSample
from fleet.health.quantities import QUANTITIES
from fleet.health.series import HOUR_MS, battery_series, growth, slope_per_h


@dataclass(frozen=True, slots=True)
class Observations:
    """One board over ``[start_ms, end_ms)``: its health reports and readings in that span.

    ``last_seen_ms``: the last time the gateway heard from it up to ``end_ms`` (``None``:
    not at all). ``baselines``: per quantity, the readings of this span only.
    """

    start_ms: int
    end_ms: int
    last_seen_ms: int | None
    health: tuple[HealthSample, ...] = ()
    baselines: Mapping[str, Baseline] = field(default_factory=dict)

    @property
    def hours(self) -> float:
        return max(self.end_ms - self.start_ms, 1) / HOUR_MS

    @property
    def silent_ms(self) -> int:
        if self.last_seen_ms is None:
            return self.end_ms - self.start_ms
        return max(0, self.end_ms - self.last_seen_ms)


@dataclass(frozen=True, slots=True)
class WorseLimits:
    """How much worse is too much. ``silent_s`` and ``reboots`` are the rollout's ``limits``
    of the same names (DESIGN-control.md); the others are the fleet's."""

    silent_s: int = 900
    reboots: int = 1
    implausible_k: float = 3.0
    implausible_min_count: int = 30
    drain_factor: float = 2.0
    drain_min_v_per_h: float = 0.02
    drain_min_samples: int = 4
    sensor_errors: int = 3

    @classmethod
    def from_rollout(cls, limits: Mapping[str, Any], **rest: Any) -> WorseLimits:
        """From a desired document's ``rollout.limits`` (``silent_s``, ``reboots``)."""
        return cls(silent_s=int(limits["silent_s"]), reboots=int(limits["reboots"]), **rest)


@dataclass(frozen=True, slots=True)
class Reason:
    """One way the board is worse: ``kind`` as listed above, a sentence, and the numbers."""

    kind: str
    message: str
    detail: Mapping[str, object]


def worse_after(before: Observations, after: Observations, limits: WorseLimits) -> list[Reason]:
    """Why the board's data is worse after the update than before it (empty: it is not)."""
    return [
        *_silence(before, after, limits),
        *_implausible(before, after, limits),
        *_drain(before, after, limits),
        *_reboots(before, after, limits),
        *_sensor_errors(before, after, limits),
    ]


def _silence(before: Observations, after: Observations, limits: WorseLimits) -> list[Reason]:
    reasons = []
    limit_ms = limits.silent_s * 1000
    if after.silent_ms >= limit_ms and before.silent_ms < limit_ms:
        silent_s = after.silent_ms / 1000
        reasons.append(
            Reason(
                "silence",
                f"silent for {silent_s:.0f} s (limit {limits.silent_s} s)",
                {"silent_s": silent_s, "silent_limit_s": limits.silent_s},
            )
        )
        return reasons  # every quantity is missing too: one reason says it
    for name in sorted(before.baselines):
        if before.baselines[name].count and not after.baselines.get(name, Baseline()).count:
            reasons.append(
                Reason(
                    "silence",
                    f"{name} reported {before.baselines[name].count} times before, none after",
                    {"quantity": name, "before_count": before.baselines[name].count},
                )
            )
    return reasons


def _implausible(before: Observations, after: Observations, limits: WorseLimits) -> list[Reason]:
    reasons = []
    for name, a in sorted(after.baselines.items()):
        q = QUANTITIES.get(name)
        if q is None or not a.count:
            continue
        if a.min < q.low or a.max > q.high:
            reasons.append(
                Reason(
                    "implausible",
                    f"{name} {a.min:g}..{a.max:g} {q.unit} after, outside {q.low:g}..{q.high:g}",
                    {"quantity": name, "min": a.min, "max": a.max, "low": q.low, "high": q.high},
                )
            )
            continue
        b = before.baselines.get(name)
        if b is None or b.count < limits.implausible_min_count:
            continue
        std = max(b.std, q.resolution)
        sigmas = abs(a.mean - b.mean) / std
        if sigmas > limits.implausible_k:
            reasons.append(
                Reason(
                    "implausible",
                    f"{name} mean {a.mean:g} {q.unit} after, {b.mean:g} before "
                    f"({sigmas:.1f} standard deviations)",
                    {
                        "quantity": name,
                        "mean_after": a.mean,
                        "mean_before": b.mean,
                        "std_before": std,
                        "sigmas": round(sigmas, 2),
                    },
                )
            )
    return reasons


def _drain_v_per_h(obs: Observations, limits: WorseLimits) -> float | None:
    times, volts = battery_series(obs.health)
    if len(times) < limits.drain_min_samples:
        return None
    slope = slope_per_h(times, volts)
    return None if slope is None else max(0.0, -slope)


def _drain(before: Observations, after: Observations, limits: WorseLimits) -> list[Reason]:
    drain_after = _drain_v_per_h(after, limits)
    if drain_after is None:
        return []
    drain_before = _drain_v_per_h(before, limits) or 0.0
    if (
        drain_after <= limits.drain_factor * drain_before
        or drain_after - drain_before <= limits.drain_min_v_per_h
    ):
        return []
    return [
        Reason(
            "battery_drain",
            f"battery drains {drain_after:.3f} V/h after, {drain_before:.3f} V/h before",
            {"drain_after_v_per_h": drain_after, "drain_before_v_per_h": drain_before},
        )
    ]


def _more(
    kind: str,
    what: str,
    n_before: int,
    n_after: int,
    before: Observations,
    after: Observations,
    allowed: int,
) -> list[Reason]:
    expected = n_before / before.hours * after.hours
    if n_after - expected <= allowed:
        return []
    return [
        Reason(
            kind,
            f"{n_after} {what} in {after.hours:.2f} h after, {expected:.1f} expected "
            f"from {n_before} in {before.hours:.2f} h before",
            {
                "after": n_after,
                "before": n_before,
                "expected": round(expected, 3),
                "allowed": allowed,
            },
        )
    ]


def _reboots(before: Observations, after: Observations, limits: WorseLimits) -> list[Reason]:
    n_before = growth(s.boot_count for s in before.health)
    n_after = growth(s.boot_count for s in after.health)
    return _more("reboots", "boots", n_before, n_after, before, after, limits.reboots)


def _errors(obs: Observations) -> int:
    faults = {
        (sensor, fault) for s in obs.health for sensor, c in s.sensor_errors.items() for fault in c
    }
    return sum(
        growth(s.sensor_errors.get(sensor, {}).get(fault, 0) for s in obs.health)
        for sensor, fault in faults
    )


def _sensor_errors(before: Observations, after: Observations, limits: WorseLimits) -> list[Reason]:
    return _more(
        "sensor_errors",
        "sensor errors",
        _errors(before),
        _errors(after),
        before,
        after,
        limits.sensor_errors,
    )
