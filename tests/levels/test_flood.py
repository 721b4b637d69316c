"""Flood alert levels Siaga IV..I at a river gauge (``fleet/levels.py``)."""

from __future__ import annotations

import math

import pytest

from fleet.levels import FLOOD_LEVELS, NORMAL, flood_level, flood_level_name, flood_thresholds

# A Tegal gauge: the river runs about 0.7 m above the bed between storms and the bank is
# full at about 3.45 m (hw/signals.py), so the alert levels sit in between.
TEGAL = {"siaga4": 1.5, "siaga3": 2.0, "siaga2": 2.6, "siaga1": 3.2}


def reached(level_m: float, thresholds: dict[str, float] = TEGAL) -> str:
    return flood_level(level_m, thresholds).reached.key


@pytest.mark.parametrize(
    ("level_m", "key"),
    [
        (0.0, "normal"),
        (0.7, "normal"),
        (1.49, "normal"),
        (1.5, "siaga4"),
        (1.51, "siaga4"),
        (1.99, "siaga4"),
        (2.0, "siaga3"),
        (2.59, "siaga3"),
        (2.6, "siaga2"),
        (3.19, "siaga2"),
        (3.2, "siaga1"),
        (3.45, "siaga1"),
        (30.0, "siaga1"),
    ],
)
def test_a_level_is_reached_at_its_threshold(level_m: float, key: str) -> None:
    assert reached(level_m) == key


def test_margin_to_the_next_level() -> None:
    status = flood_level(0.7, TEGAL)
    assert status.reached is NORMAL
    assert status.next_level is not None
    assert status.next_level.key == "siaga4"
    assert status.margin_m == pytest.approx(0.8)
    status = flood_level(2.0, TEGAL)
    assert status.next_level is not None
    assert status.next_level.key == "siaga2"
    assert status.margin_m == pytest.approx(0.6)
    status = flood_level(2.59, TEGAL)
    assert status.margin_m == pytest.approx(0.01)


def test_no_margin_above_siaga1() -> None:
    status = flood_level(3.3, TEGAL)
    assert (status.reached.key, status.next_level, status.margin_m) == ("siaga1", None, None)


def test_colours_rise_with_the_level() -> None:
    names = [flood_level(m, TEGAL).colour.name for m in (1.0, 1.5, 2.0, 2.6, 3.2)]
    assert names == ["green", "blue", "yellow", "red", "purple"]
    assert [level.label for level in FLOOD_LEVELS] == [
        "Siaga IV",
        "Siaga III",
        "Siaga II",
        "Siaga I",
    ]


def test_only_some_levels_set() -> None:
    two = {"siaga3": 2.0, "siaga1": 3.2}
    assert reached(1.9, two) == "normal"
    assert flood_level(1.9, two).next_level is not None
    assert flood_level(2.5, two).reached.key == "siaga3"
    status = flood_level(2.5, two)
    assert status.next_level is not None
    assert status.next_level.key == "siaga1"
    assert status.margin_m == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("spelling", "key"),
    [
        ("siaga4", "siaga4"),
        ("Siaga IV", "siaga4"),
        ("siaga_iv", "siaga4"),
        ("SIAGA-4", "siaga4"),
        ("siaga 3", "siaga3"),
        ("Siaga III", "siaga3"),
        ("II", "siaga2"),
        ("2", "siaga2"),
        (" siaga i ", "siaga1"),
        ("siaga1", "siaga1"),
    ],
)
def test_common_spellings_are_read(spelling: str, key: str) -> None:
    assert flood_level_name(spelling) == key


@pytest.mark.parametrize(
    "spelling", ["warn", "siaga5", "siaga 0", "V", "siaga", "", "awas", "iiii"]
)
def test_other_names_are_refused(spelling: str) -> None:
    with pytest.raises(ValueError, match="is not a flood alert level; write siaga4"):
        flood_level_name(spelling)


def test_spellings_mixed_in_one_site() -> None:
    mixed = {"Siaga IV": 1.5, "siaga_iii": 2.0, "II": 2.6, "siaga-1": 3.2}
    assert flood_thresholds(mixed) == TEGAL
    assert reached(2.7, mixed) == "siaga2"


@pytest.mark.parametrize(
    ("thresholds", "problem"),
    [
        ({"siaga4": 2.0, "siaga3": 1.5}, r"siaga3 \(1.5 m\) is not above siaga4 \(2 m\)"),
        ({"siaga4": 1.5, "siaga3": 1.5}, r"siaga3 \(1.5 m\) is not above siaga4"),
        (
            {"siaga4": 1.5, "siaga3": 2.0, "siaga2": 2.6, "siaga1": 2.5},
            r"siaga1 \(2.5 m\) is not above siaga2 \(2.6 m\)",
        ),
        ({"siaga3": 2.0, "siaga1": 1.0}, r"siaga1 \(1 m\) is not above siaga3"),
        ({"siaga4": 1.5, "IV": 1.6}, "siaga4 is given twice"),
        ({"siaga4": math.nan}, "must be a finite level"),
        ({"siaga4": -0.5}, "must be a finite level"),
        ({"warn": 1.5}, "'warn' is not a flood alert level"),
        ({}, "no flood levels set"),
    ],
)
def test_bad_thresholds_are_refused(thresholds: dict[str, float], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        flood_level(1.0, thresholds)


@pytest.mark.parametrize("level_m", [-0.01, math.nan, math.inf])
def test_impossible_water_levels_are_refused(level_m: float) -> None:
    with pytest.raises(ValueError, match="water level must be"):
        flood_level(level_m, TEGAL)
