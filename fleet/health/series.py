"""Small arithmetic over a board's health history: windows, counter growth, slopes."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence

from fleet.health.model import HealthSample

HOUR_MS = 3_600_000


def since(samples: Sequence[HealthSample], start_ms: int) -> Sequence[HealthSample]:
    """The samples received at or after ``start_ms`` (samples are oldest first)."""
    i = bisect_left(samples, start_ms, key=_at)
    return samples[i:] if i else samples


def _at(sample: HealthSample) -> int:
    return sample.at_ms


def growth(counts: Iterable[int | None]) -> int:
    """How much a counter grew over successive reports, across the board's reboots.

    Counters kept in RAM start again from 0 at boot, so a value below the previous one is
    taken as that many new counts since a reboot. ``None`` (not reported) is skipped.
    """
    total = 0
    prev: int | None = None
    for n in counts:
        if n is None:
            continue
        if prev is not None:
            total += n - prev if n >= prev else n
        prev = n
    return total


def rises(values: Sequence[int | None]) -> int:
    """How many reports in a row, ending with the newest, were each above the one before."""
    count = 0
    for i in range(len(values) - 1, 0, -1):
        new, old = values[i], values[i - 1]
        if new is None or old is None or new <= old:
            break
        count += 1
    return count


def slope_per_h(points: Sequence[tuple[int, float]]) -> float | None:
    """Least-squares slope of ``(at_ms, value)`` points, per hour; ``None`` below two times."""
    n = len(points)
    if n < 2:
        return None
    t0 = points[0][0]
    st = sv = stt = stv = 0.0
    for at, v in points:
        t = (at - t0) / HOUR_MS
        st += t
        sv += v
        stt += t * t
        stv += t * v
    denom = n * stt - st * st
    if denom <= 0:
        return None
    return (n * stv - st * sv) / denom


def battery_points(samples: Iterable[HealthSample]) -> list[tuple[int, float]]:
    return [(s.at_ms, s.battery) for s in samples if s.battery is not None]
