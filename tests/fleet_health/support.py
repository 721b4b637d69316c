"""Builders for the health rules' inputs: a board or gateway with everything normal."""

from __future__ import annotations

from typing import Any

from fleet.health import BacklogSample, Baseline, BoardHealth, GatewayHealth, HealthSample

NOW = 1_700_000_000_000
MIN = 60_000
HOUR = 3_600_000


def sample(minutes_ago: float, **fields: Any) -> HealthSample:
    return HealthSample(at_ms=NOW - int(minutes_ago * MIN), **fields)


def board(**fields: Any) -> BoardHealth:
    values: dict[str, Any] = {
        "board_id": "tgl-air-0001",
        "kind": "air",
        "site": "tegal",
        "gateway": "gw1",
        "cycle_s": 60.0,
        "last_seen_ms": NOW - 10_000,
    }
    values.update(fields)
    return BoardHealth(**values)


def gateway(**fields: Any) -> GatewayHealth:
    values: dict[str, Any] = {
        "gateway": "gw1",
        "site": "tegal",
        "state_interval_s": 30.0,
        "last_state_ms": NOW - 5_000,
        "disk_free": 500,
        "disk_total": 1000,
    }
    values.update(fields)
    return GatewayHealth(**values)


def backlog(*values: int) -> tuple[BacklogSample, ...]:
    return tuple(BacklogSample(NOW - (len(values) - i) * 30_000, v) for i, v in enumerate(values))


def baseline(mean: float, std: float, count: int = 100) -> Baseline:
    """A baseline with this mean and sample standard deviation."""
    return Baseline(count, mean, std * std * (count - 1), mean - 3 * std, mean + 3 * std)
