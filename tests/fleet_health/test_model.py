"""The inputs: health reports read defensively, Welford baselines, and the series helpers."""

from __future__ import annotations

import statistics

import pytest

from fleet.health import Baseline, HealthSample
from fleet.health.series import growth, rises, since, slope_per_h


def test_a_health_report_as_the_firmware_sends_it() -> None:
    report = {
        "board": "tgl-air-0001",
        "boot_count": 12,
        "reset_cause": "wdt",
        "heap_free": 51_000,
        "heap_min": 40_000,
        "rssi": -71,
        "battery": 3.91,
        "buffered": 2,
        "dropped": 0,
        "samples": 40,
        "sensor_errors": {"pms5003": {"timeout": 2}},
    }
    s = HealthSample.from_report(5, report)
    assert s == HealthSample(
        5, 12, "wdt", 51_000, 40_000, -71.0, 3.91, 2, 0, 40, {"pms5003": {"timeout": 2}}
    )


def test_a_malformed_report_leaves_fields_unknown() -> None:
    report: dict[str, object] = {
        "boot_count": True,
        "reset_cause": 3,
        "heap_free": -1,
        "battery": float("nan"),
        "buffered": "2",
        "sensor_errors": {"pms5003": {"timeout": -1, "garbage": 1}, 7: {"x": 1}, "bme": 3},
    }
    s = HealthSample.from_report(5, report)
    assert s == HealthSample(5, sensor_errors={"pms5003": {"garbage": 1}})
    assert HealthSample.from_report(5, {"sensor_errors": []}).sensor_errors == {}


def test_baseline_agrees_with_statistics() -> None:
    values = [21.5, 22.0, 25.25, 19.0, 30.5, 27.0]
    b = Baseline.of(values)
    assert b.count == 6
    assert b.mean == pytest.approx(statistics.mean(values))
    assert b.std == pytest.approx(statistics.stdev(values))
    assert (b.min, b.max) == (19.0, 30.5)
    assert Baseline().std == 0.0
    assert Baseline.of([3.0]).variance == 0.0


def test_merged_baselines_are_the_baseline_of_all_values() -> None:
    a, b = [1.0, 2.0, 4.0], [10.0, 11.5, 9.0, 12.0]
    merged = Baseline.of(a).merge(Baseline.of(b))
    whole = Baseline.of(a + b)
    assert merged.count == whole.count
    assert merged.mean == pytest.approx(whole.mean)
    assert merged.m2 == pytest.approx(whole.m2)
    assert (merged.min, merged.max) == (whole.min, whole.max)
    assert Baseline().merge(whole) == whole
    assert whole.merge(Baseline()) == whole


def test_growth_counts_across_reboots_and_skips_unknowns() -> None:
    assert growth([3, 5, None, 9]) == 6
    assert growth([7, 2, 4]) == 4  # restarted from 0 at boot: 2 new, then 2 more
    assert growth([]) == 0


def test_rises_counts_from_the_newest_back() -> None:
    assert rises([1, 2, 3]) == 2
    assert rises([3, 1, 2, 3]) == 2
    assert rises([1, 2, None, 3]) == 0  # a report without the count breaks the run
    assert rises([5, 5]) == 0


def test_since_keeps_the_window() -> None:
    samples = tuple(HealthSample(at) for at in (10, 20, 30))
    assert [s.at_ms for s in since(samples, 20)] == [20, 30]
    assert [s.at_ms for s in since(samples, 0)] == [10, 20, 30]
    assert since(samples, 31) == ()


def test_slope_per_hour() -> None:
    hour = 3_600_000
    assert slope_per_h([0, hour, 2 * hour], [4.0, 3.9, 3.8]) == pytest.approx(-0.1)
    assert slope_per_h([0], [4.0]) is None
    assert slope_per_h([5, 5], [1.0, 2.0]) is None
    assert slope_per_h([0, hour], [1.0, 1.0]) == 0.0
