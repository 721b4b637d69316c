"""Thresholds from and to JSON: defaults, partial documents, and every refusal names its field."""

from __future__ import annotations

import dataclasses
import json

import pytest

from fleet.errors import BadThresholds
from fleet.health import QUANTITIES, Thresholds


def test_defaults_round_trip_through_json() -> None:
    doc = json.loads(json.dumps(Thresholds().to_json()))
    assert Thresholds.from_json(doc) == Thresholds()
    assert doc["stale_cycles"] == 5
    assert doc["bad_reset_causes"] == ["wdt", "brownout"]


def test_a_partial_document_keeps_the_other_defaults() -> None:
    t = Thresholds.from_json({"battery_low_v": 3, "baseline_quantities": ["temperature"]})
    assert t.battery_low_v == 3.0
    assert isinstance(t.battery_low_v, float)
    assert t.baseline_quantities == ("temperature",)
    assert t.stale_cycles == Thresholds().stale_cycles


@pytest.mark.parametrize(
    ("doc", "field", "words"),
    [
        ({"stale_cycle": 5}, "stale_cycle", "no such threshold"),
        ({"stale_cycles": 1.5}, "stale_cycles", "integer"),
        ({"stale_cycles": True}, "stale_cycles", "integer"),
        ({"stale_cycles": "5"}, "stale_cycles", "integer"),
        ({"stale_cycles": 0}, "stale_cycles", "outside 1..10000 cycles"),
        ({"battery_low_v": "3.4"}, "battery_low_v", "number"),
        ({"battery_low_v": False}, "battery_low_v", "number"),
        ({"battery_low_v": float("nan")}, "battery_low_v", "number"),
        ({"battery_low_v": 9.0}, "battery_low_v", "outside 2.0..5.0 V"),
        ({"reboot_window_s": 9}, "reboot_window_s", "outside 10..604800 s"),
        ({"disk_free_min_fraction": -0.1}, "disk_free_min_fraction", "outside"),
        ({"bad_reset_causes": "wdt"}, "bad_reset_causes", "list of names"),
        ({"bad_reset_causes": [1]}, "bad_reset_causes", "list of names"),
        ({"bad_reset_causes": []}, "bad_reset_causes", "1 to 16"),
        ({"baseline_quantities": ["temp"]}, "baseline_quantities", "no such quantity 'temp'"),
    ],
)
def test_refusals_name_the_field(doc: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(BadThresholds) as refused:
        Thresholds.from_json(doc)
    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}: ")
    assert words in str(refused.value)
    assert isinstance(refused.value, ValueError)


def test_a_document_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(BadThresholds, match="JSON object") as refused:
        Thresholds.from_json([("stale_cycles", 5)])
    assert refused.value.field == ""


def test_constructing_directly_is_checked_too() -> None:
    with pytest.raises(BadThresholds, match="reboot_boots"):
        Thresholds(reboot_boots=-1)


def test_every_threshold_has_a_unit_a_meaning_and_a_default_within_bounds() -> None:
    described = Thresholds.describe()
    assert [name for name, *_ in described] == [f.name for f in dataclasses.fields(Thresholds)]
    for name, default, unit, meaning in described:
        assert unit
        assert meaning
        assert Thresholds.from_json({name: Thresholds().to_json()[name]}) == Thresholds()
        assert default is not None


def test_the_default_baseline_quantities_are_known() -> None:
    assert set(Thresholds().baseline_quantities) <= set(QUANTITIES)
