"""ISPU against the table of PermenLHK P.14/MENLHK/SETJEN/KUM.1/7/2020 (``fleet/levels.py``)."""

from __future__ import annotations

import math

import pytest

from fleet.levels import (
    BAIK,
    BERBAHAYA,
    ISPU_BREAKPOINTS,
    ISPU_CATEGORIES,
    SANGAT_TIDAK_SEHAT,
    SEDANG,
    TIDAK_SEHAT,
    IspuCategory,
    ispu,
    ispu_category,
    ispu_of,
)

# The regulation's rows, written out again here rather than read from the module, so that a
# wrong number in the module's table fails: (ISPU, PM10, PM2.5) at the top of each band.
REGULATION = [(50, 50.0, 15.5), (100, 150.0, 55.4), (200, 350.0, 150.4), (300, 420.0, 250.4)]
# The lower end of each next band as the concentration tables list it (PM10 in whole
# ug/m3, PM2.5 in tenths): the index there (worked out by hand) and the category.
NEXT_BAND = [
    # PM10 51: 50 + 50 * 1 / 100 = 50.5; PM2.5 15.6: 50 + 50 * 0.1 / 39.9 = 50.13
    (51.0, 51, 15.6, 51, SEDANG),
    # PM10 151: 100.5; PM2.5 55.5: 100 + 100 * 0.1 / 95 = 100.11
    (151.0, 101, 55.5, 101, TIDAK_SEHAT),
    # PM10 351: 200 + 100 / 70 = 201.43; PM2.5 150.5: 200.1
    (351.0, 202, 150.5, 201, SANGAT_TIDAK_SEHAT),
    # PM10 421: 300 + 200 / 80 = 302.5; PM2.5 250.5: 300 + 200 * 0.1 / 249.6 = 300.08
    (421.0, 303, 250.5, 301, BERBAHAYA),
]


def test_table_is_the_regulations() -> None:
    assert ISPU_BREAKPOINTS["pm10"] == (
        (0, 0.0),
        *((i, pm10) for i, pm10, _ in REGULATION),
        (500, 500.0),
    )
    assert ISPU_BREAKPOINTS["pm2_5"] == (
        (0, 0.0),
        *((i, pm2_5) for i, _, pm2_5 in REGULATION),
        (500, 500.0),
    )


@pytest.mark.parametrize(("index", "pm10", "pm2_5"), REGULATION)
def test_each_breakpoint_gives_its_rows_index(index: int, pm10: float, pm2_5: float) -> None:
    assert ispu("pm10", pm10).index == index
    assert ispu("pm2_5", pm2_5).index == index
    assert ispu("pm10", pm10).category == ispu_category(index)
    assert ispu("pm2_5", pm2_5).category == ispu_category(index)


@pytest.mark.parametrize(("pm10", "pm10_index", "pm2_5", "pm2_5_index", "category"), NEXT_BAND)
def test_just_above_a_breakpoint_is_the_next_category(
    pm10: float, pm10_index: int, pm2_5: float, pm2_5_index: int, category: IspuCategory
) -> None:
    assert (ispu("pm10", pm10).index, ispu("pm10", pm10).category) == (pm10_index, category)
    assert (ispu("pm2_5", pm2_5).index, ispu("pm2_5", pm2_5).category) == (pm2_5_index, category)


def test_zero_and_the_tops() -> None:
    assert ispu("pm2_5", 0.0).index == 0
    assert ispu("pm2_5", 0.0).category is BAIK
    assert ispu("pm2_5", 500.0).index == 500
    assert not ispu("pm2_5", 500.0).capped
    assert ispu("pm10", 500.0).index == 500


@pytest.mark.parametrize(
    ("pollutant", "concentration", "index"),
    [
        # 50 * 10 / 15.5 = 32.26
        ("pm2_5", 10.0, 33),
        # 50 + 50 * (30 - 15.5) / 39.9 = 68.17: a wet-season Cimahi morning
        ("pm2_5", 30.0, 69),
        # 100 + 100 * (100 - 55.4) / 95 = 146.95
        ("pm2_5", 100.0, 147),
        # 200 + 100 * (200 - 150.4) / 100 = 249.6: open burning nearby
        ("pm2_5", 200.0, 250),
        # 300 + 200 * (375.2 - 250.4) / 249.6 = 400 exactly
        ("pm2_5", 375.2, 400),
        # 50 + 50 * (100 - 50) / 100 = 75 exactly
        ("pm10", 100.0, 75),
        # 100 + 100 * (250 - 150) / 200 = 150 exactly
        ("pm10", 250.0, 150),
        # 200 + 100 * (385 - 350) / 70 = 250 exactly
        ("pm10", 385.0, 250),
        # 300 + 200 * (460 - 420) / 80 = 400 exactly
        ("pm10", 460.0, 400),
        # 25.6 = 1.6 x a 16 ug/m3 PM2.5 baseline: 25.6
        ("pm10", 25.6, 26),
    ],
)
def test_interpolated_by_hand(pollutant: str, concentration: float, index: int) -> None:
    assert ispu(pollutant, concentration).index == index


def test_a_fraction_above_a_whole_index_rounds_up() -> None:
    # 50 + 50 * 0.01 / 100 = 50.005: already above Baik's top.
    assert ispu("pm10", 50.01).index == 51
    assert ispu("pm10", 50.01).category is SEDANG


@pytest.mark.parametrize("concentration", [500.1, 999.0, 1000.0, 1e9])
def test_above_the_table_is_capped_at_500(concentration: float) -> None:
    for pollutant in ("pm2_5", "pm10"):
        result = ispu(pollutant, concentration)
        assert (result.index, result.category, result.capped) == (500, BERBAHAYA, True)
        assert result.concentration == concentration


@pytest.mark.parametrize("concentration", [-0.1, -1e-9, math.nan, math.inf, -math.inf])
def test_impossible_concentrations_are_refused(concentration: float) -> None:
    with pytest.raises(ValueError, match="pm2_5 must be a finite concentration"):
        ispu("pm2_5", concentration)


@pytest.mark.parametrize("pollutant", ["pm1", "pm25", "PM2.5", "temperature", ""])
def test_unknown_pollutants_are_refused(pollutant: str) -> None:
    with pytest.raises(ValueError, match="no ISPU for"):
        ispu(pollutant, 10.0)


def test_categories_cover_the_scale_in_order() -> None:
    assert [c.name_id for c in ISPU_CATEGORIES] == [
        "Baik",
        "Sedang",
        "Tidak Sehat",
        "Sangat Tidak Sehat",
        "Berbahaya",
    ]
    for index in range(0, 501):
        category = ispu_category(index)
        assert category.low <= index
        assert category.high is None or index <= category.high
    assert [ispu_category(i).key for i in (50, 51, 100, 101, 200, 201, 300, 301)] == [
        "baik",
        "sedang",
        "sedang",
        "tidak_sehat",
        "tidak_sehat",
        "sangat_tidak_sehat",
        "sangat_tidak_sehat",
        "berbahaya",
    ]
    with pytest.raises(ValueError, match="never negative"):
        ispu_category(-1)


def test_category_colours() -> None:
    assert [c.colour.name for c in ISPU_CATEGORIES] == ["green", "blue", "yellow", "red", "black"]
    assert ispu("pm2_5", 30.0).colour == SEDANG.colour


def test_the_worst_sub_index_is_the_ispu() -> None:
    # A Cimahi rush hour: PM2.5 32 (71) and PM10 51.2 (51).
    worst = ispu_of({"pm1": 22.4, "pm2_5": 32.0, "pm10": 51.2, "temperature": 27.0})
    assert worst is not None
    assert (worst.pollutant, worst.index) == ("pm2_5", 71)
    # Coarse dust with little fine: PM10 120 (85) beats PM2.5 10 (33).
    worst = ispu_of({"pm2_5": 10.0, "pm10": 120.0})
    assert worst is not None
    assert (worst.pollutant, worst.index, worst.category) == ("pm10", 85, SEDANG)


def test_ispu_of_one_pollutant_or_none() -> None:
    only = ispu_of({"pm10": 100.0})
    assert only is not None
    assert (only.pollutant, only.index) == ("pm10", 75)
    assert ispu_of({}) is None
    assert ispu_of({"pm1": 10.0, "humidity": 80.0}) is None


def test_ispu_of_a_tie_is_reported_as_pm2_5() -> None:
    tie = ispu_of({"pm10": 50.0, "pm2_5": 15.5})
    assert tie is not None
    assert (tie.pollutant, tie.index) == ("pm2_5", 50)


def test_ispu_of_refuses_a_bad_reading() -> None:
    with pytest.raises(ValueError, match="pm10 must be a finite concentration"):
        ispu_of({"pm2_5": 10.0, "pm10": math.nan})


def test_colour_names_parse_in_rich_and_textual() -> None:
    rich_color = pytest.importorskip("rich.color")
    textual_color = pytest.importorskip("textual.color")
    for category in ISPU_CATEGORIES:
        rich_color.Color.parse(category.colour.name)
        textual_color.Color.parse(category.colour.name)
        textual_color.Color.parse(category.colour.hex)
