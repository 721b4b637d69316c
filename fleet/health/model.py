"""What the health rules read and what they say: frozen inputs, :class:`Finding` out.

The store builds these from fleet.db (``fleet/store.py``); nothing here reads a database, a
broker or a clock. Times are Unix milliseconds, as in the gateway's ``state`` messages.

A board's health report arrives as a decoded CBOR map (``firmware/health.py``) that no one
but the board vouches for, so :meth:`HealthSample.from_report` keeps only fields of the
expected type and leaves the rest ``None``: a rule never trips over a malformed report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

Severity: TypeAlias = Literal["warning", "critical"]
SubjectKind: TypeAlias = Literal["board", "gateway"]
#: ``{sensor: {fault kind: count}}``, as the board's ``Health.sensor_errors`` keeps it.
SensorErrors: TypeAlias = Mapping[str, Mapping[str, int]]


def _count(value: object) -> int | None:
    return value if type(value) is int and value >= 0 else None


def _number(value: object) -> float | None:
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return float(value)
    return None


def _sensor_errors(value: object) -> SensorErrors:
    if not isinstance(value, Mapping):
        return {}
    out: dict[str, dict[str, int]] = {}
    for sensor, faults in value.items():
        if isinstance(sensor, str) and isinstance(faults, Mapping):
            counts = {
                k: v for k, v in faults.items() if isinstance(k, str) and _count(v) is not None
            }
            if counts:
                out[sensor] = counts
    return out


@dataclass(frozen=True, slots=True)
class HealthSample:
    """One health report of a board, received at ``at_ms``; ``None`` where it said nothing usable.

    Units: ``battery`` V, ``heap_free``/``heap_min`` bytes, ``rssi`` dBm; ``buffered`` records
    in the board's flash ring buffer; ``boot_count`` since provisioning; ``dropped``,
    ``samples`` and ``sensor_errors`` count since the board's last boot.
    """

    at_ms: int
    boot_count: int | None = None
    reset_cause: str | None = None
    heap_free: int | None = None
    heap_min: int | None = None
    rssi: float | None = None
    battery: float | None = None
    buffered: int | None = None
    dropped: int | None = None
    samples: int | None = None
    sensor_errors: SensorErrors = field(default_factory=dict)

    @classmethod
    def from_report(cls, at_ms: int, health: Mapping[str, object]) -> HealthSample:
        """A sample from the board's health map as decoded (``firmware/health.py`` ``report``)."""
        cause = health.get("reset_cause")
        return cls(
            at_ms=at_ms,
            boot_count=_count(health.get("boot_count")),
            reset_cause=cause if isinstance(cause, str) else None,
            heap_free=_count(health.get("heap_free")),
            heap_min=_count(health.get("heap_min")),
            rssi=_number(health.get("rssi")),
            battery=_number(health.get("battery")),
            buffered=_count(health.get("buffered")),
            dropped=_count(health.get("dropped")),
            samples=_count(health.get("samples")),
            sensor_errors=_sensor_errors(health.get("sensor_errors")),
        )


@dataclass(frozen=True, slots=True)
class Baseline:
    """Running statistics of one quantity on one board (Welford): what is normal for it.

    ``m2`` is the sum of squared deviations from the mean; :meth:`add` and :meth:`merge`
    return new baselines, so the store can keep one per (board, quantity) and fold in each
    batch's readings without keeping them.
    """

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    @property
    def variance(self) -> float:
        """Sample variance (n - 1); 0 below two values."""
        return self.m2 / (self.count - 1) if self.count > 1 else 0.0

    @property
    def std(self) -> float:
        return math.sqrt(self.variance)

    def add(self, x: float) -> Baseline:
        count = self.count + 1
        delta = x - self.mean
        mean = self.mean + delta / count
        return Baseline(
            count, mean, self.m2 + delta * (x - mean), min(self.min, x), max(self.max, x)
        )

    def merge(self, other: Baseline) -> Baseline:
        """The baseline of both sets of values together (Chan et al.'s parallel update)."""
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / count
        m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / count
        return Baseline(count, mean, m2, min(self.min, other.min), max(self.max, other.max))

    @classmethod
    def of(cls, values: list[float] | tuple[float, ...]) -> Baseline:
        baseline = cls()
        for x in values:
            baseline = baseline.add(x)
        return baseline


@dataclass(frozen=True, slots=True)
class BoardHealth:
    """What the fleet knows of one board at evaluation time.

    ``cycle_s``: seconds between the board's uploads (its ``interval_s`` times
    ``upload_every``), the unit of silence. ``last_seen_ms``: the gateway last heard from it
    (``None``: never). ``health``: recent health reports, oldest first, as long a history as
    the store keeps (the longest rule window is ``Thresholds.drain_window_s``; the drain
    baseline uses all of it). ``baselines``: per SenML quantity name (``"temperature"``).
    ``latest``: the newest value of each quantity, in the units of
    :data:`fleet.health.quantities.QUANTITIES`.
    """

    board_id: str
    kind: str
    site: str
    gateway: str
    cycle_s: float
    last_seen_ms: int | None
    health: tuple[HealthSample, ...] = ()
    baselines: Mapping[str, Baseline] = field(default_factory=dict)
    latest: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BacklogSample:
    """A gateway's backlog (readings not yet in a delivered batch) in its state of ``at_ms``."""

    at_ms: int
    backlog: int


@dataclass(frozen=True, slots=True)
class UplinkState:
    """One uplink as the gateway's state names it: up, readings delivered, lag (readings)."""

    up: bool
    delivered: int = 0
    lag: int = 0


@dataclass(frozen=True, slots=True)
class GatewayHealth:
    """What the fleet knows of one gateway, from its signed ``state`` messages.

    ``state_interval_s``: seconds between its state messages (``[gateway.control]``).
    ``last_state_ms``: when the newest one was sent (``None``: never). ``disk_free`` and
    ``disk_total`` in bytes; ``backlog``: recent states' backlogs, oldest first.
    """

    gateway: str
    site: str
    state_interval_s: float
    last_state_ms: int | None
    disk_free: int | None = None
    disk_total: int | None = None
    backlog: tuple[BacklogSample, ...] = ()
    uplinks: Mapping[str, UplinkState] = field(default_factory=dict)
    #: The lab flag (``security.plain_coap``): anyone may post under any board's name.
    plain_coap: bool = False
    #: What its OSCORE layer refused, by reason (``security.refused``).
    refused: Mapping[str, int] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        """How findings name a gateway: ``<site>/<gateway>``, as in its MQTT topics."""
        return f"{self.site}/{self.gateway}"


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule's verdict on one subject in one evaluation.

    ``detail`` holds the numbers that triggered it (JSON-able: numbers, text, lists, maps),
    so an operator sees why without re-running the rule. ``evaluate`` yields at most one
    finding per (rule, subject), the key alerts are kept under.
    """

    rule: str
    subject: str
    subject_kind: SubjectKind
    severity: Severity
    detail: Mapping[str, object]

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule, self.subject)
