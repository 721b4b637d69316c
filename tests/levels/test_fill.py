"""A waste bin's fill, in bands (``fleet/levels.py``)."""

from __future__ import annotations

import math

import pytest

from fleet.levels import FILL_BANDS, fill_status


@pytest.mark.parametrize(
    ("percent", "key"),
    [
        (0.0, "empty"),
        (9.99, "empty"),
        (10.0, "filling"),
        (50.0, "filling"),
        (74.99, "filling"),
        (75.0, "nearly_full"),
        (89.99, "nearly_full"),
        (90.0, "full"),
        (100.0, "full"),
    ],
)
def test_bands_at_and_around_their_bounds(percent: float, key: str) -> None:
    assert fill_status(percent).band.key == key


def test_labels_and_colours() -> None:
    assert [b.label for b in FILL_BANDS] == ["empty", "filling", "nearly full", "full"]
    assert [fill_status(p).colour.name for p in (0, 10, 75, 90)] == [
        "green",
        "blue",
        "yellow",
        "red",
    ]


@pytest.mark.parametrize("percent", [-0.1, 100.1, math.nan, math.inf])
def test_impossible_fills_are_refused(percent: float) -> None:
    with pytest.raises(ValueError, match=r"fill must be a finite 0\.\.100 %"):
        fill_status(percent)
