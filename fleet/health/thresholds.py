"""Every threshold of the health rules an operator can change, with its unit and bounds.

``Thresholds()`` holds the defaults; ``Thresholds.from_json(doc)`` takes a JSON object that
names any subset of them and refuses unknown names, wrong types and values out of range with
:class:`fleet.errors.BadThresholds` naming the field. ``to_json()`` gives every one back.
``describe()`` lists name, default, unit and meaning, for ``--help`` texts and the docs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fleet.errors import BadThresholds
from fleet.health.quantities import QUANTITIES

_DAY_S = 86_400


def _t(default: Any, unit: str, low: float, high: float, doc: str) -> Any:
    return dataclasses.field(
        default=default, metadata={"unit": unit, "low": low, "high": high, "doc": doc}
    )


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The health rules' thresholds (see :mod:`fleet.health.rules` for each rule)."""

    stale_cycles: int = _t(5, "cycles", 1, 10_000, "a board silent this many cycles is stale")
    gateway_stale_intervals: int = _t(
        4, "state intervals", 1, 10_000, "a gateway whose state is this many intervals old"
    )
    # A board reports its health as it boots, so a loop shows within seconds; the floor only
    # refuses a window too short to hold a few boots.
    reboot_window_s: int = _t(3600, "s", 10, 7 * _DAY_S, "window for counting boots")
    reboot_boots: int = _t(3, "boots", 1, 10_000, "boots within the window that make a loop")
    reboot_bad_causes: int = _t(
        2, "boots", 1, 10_000, "boots within the window whose reset cause is a bad one"
    )
    bad_reset_causes: tuple[str, ...] = _t(
        ("wdt", "brownout"), "reset causes", 1, 16, "reset causes that mean trouble"
    )
    battery_low_v: float = _t(3.4, "V", 2.0, 5.0, "battery below this is low")
    drain_window_s: int = _t(
        6 * 3600, "s", 600, 7 * _DAY_S, "recent window for the battery's drain"
    )
    drain_min_samples: int = _t(4, "reports", 2, 10_000, "battery readings the window needs")
    drain_min_v_per_h: float = _t(
        0.05, "V/h", 0.0, 10.0, "drain that is never alarming, whatever the baseline"
    )
    drain_factor: float = _t(
        2.0, "ratio", 1.0, 1000.0, "drain this many times the board's baseline drain"
    )
    sensor_errors_window_s: int = _t(3600, "s", 60, 7 * _DAY_S, "window for sensor errors")
    sensor_errors_min: int = _t(3, "errors", 1, 1_000_000, "new errors of one sensor")
    heap_free_min_bytes: int = _t(16_384, "bytes", 0, 1 << 24, "free heap below this is low")
    heap_min_floor_bytes: int = _t(
        8_192, "bytes", 0, 1 << 24, "heap low-water mark since boot below this is low"
    )
    buffer_rises: int = _t(3, "reports", 1, 1000, "reports in a row with more buffered")
    buffer_min: int = _t(20, "records", 0, 1 << 30, "buffered at least this many records")
    dropped_window_s: int = _t(3600, "s", 60, 7 * _DAY_S, "window for dropped records")
    dropped_min: int = _t(1, "records", 1, 1 << 30, "records dropped within the window")
    backlog_rises: int = _t(5, "states", 1, 1000, "gateway states in a row with more backlog")
    backlog_min: int = _t(1000, "readings", 0, 1 << 40, "backlog at least this many readings")
    disk_free_min_fraction: float = _t(0.1, "fraction", 0.0, 1.0, "free share of the disk")
    implausible_k: float = _t(
        6.0, "standard deviations", 1.0, 1000.0, "distance from the board's mean"
    )
    implausible_min_count: int = _t(
        100, "readings", 2, 1 << 40, "readings a baseline needs before it judges"
    )
    baseline_quantities: tuple[str, ...] = _t(
        ("temperature", "humidity", "pressure", "battery"),
        "SenML names",
        0,
        len(QUANTITIES),
        "quantities judged against the board's baseline (event-driven ones like pm2_5 or "
        "level are left out: a flood or a fire is far from any baseline and real)",
    )
    alert_raise_after: int = _t(2, "evaluations", 1, 1000, "a finding persists to raise")
    alert_clear_after: int = _t(3, "evaluations", 1, 1000, "a finding is absent to clear")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            _check(f, value)
            if f.type == "float":  # 3 in JSON is 3.0 here, so to_json gives back a float
                object.__setattr__(self, f.name, float(value))

    @classmethod
    def from_json(cls, doc: object) -> Thresholds:
        """Thresholds from a JSON object naming any of them; the rest keep their defaults."""
        if not isinstance(doc, Mapping):
            raise BadThresholds("", f"thresholds must be a JSON object, not {type(doc).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for name, value in doc.items():
            if name not in known:
                raise BadThresholds(str(name), "no such threshold")
            values[name] = tuple(value) if isinstance(value, list) else value
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in dataclasses.fields(self)
        }

    @classmethod
    def describe(cls) -> list[tuple[str, object, str, str]]:
        """(name, default, unit, meaning) of every threshold."""
        return [
            (f.name, f.default, f.metadata["unit"], f.metadata["doc"])
            for f in dataclasses.fields(cls)
        ]


def _check(f: dataclasses.Field[Any], value: object) -> None:
    low, high, unit = f.metadata["low"], f.metadata["high"], f.metadata["unit"]
    if f.type == "int":
        if type(value) is not int:
            raise BadThresholds(f.name, f"must be an integer ({unit}), not {value!r}")
    elif f.type == "float":
        if type(value) not in (int, float) or not math.isfinite(value):  # type: ignore[arg-type]
            raise BadThresholds(f.name, f"must be a number ({unit}), not {value!r}")
    else:
        if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
            raise BadThresholds(f.name, f"must be a list of names, not {value!r}")
        if not low <= len(value) <= high:
            raise BadThresholds(f.name, f"must name {low} to {high} {unit}")
        if f.name == "baseline_quantities":
            unknown = [v for v in value if v not in QUANTITIES]
            if unknown:
                raise BadThresholds(
                    f.name, f"no such quantity {unknown[0]!r}; known: {', '.join(QUANTITIES)}"
                )
        return
    if not low <= value <= high:
        raise BadThresholds(f.name, f"{value} is outside {low}..{high} {unit}")
