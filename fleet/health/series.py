"""Small arithmetic over a board's health history: windows, counter growth, slopes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import mul

from fleet.health.model import HealthSample

HOUR_MS = 3_600_000


def since(samples: Sequence[HealthSample], start_ms: int) -> Sequence[HealthSample]:
    """The samples received at or after ``start_ms`` (samples are oldest first)."""
    # Windows are short beside the history: walking back from the end beats bisecting.
    i = len(samples)
    while i and samples[i - 1].at_ms >= start_ms:
        i -= 1
    return samples[i:] if i else samples


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


def slope_per_h(times_ms: Sequence[int], values: Sequence[float]) -> float | None:
    """Least-squares slope of ``values`` over ``times_ms``, per hour; ``None`` below two times."""
    n = len(times_ms)
    if n < 2:
        return None
    t0 = times_ms[0]
    ts = [float(at - t0) for at in times_ms]
    st = sum(ts)
    denom = n * sum(map(mul, ts, ts)) - st * st
    if denom <= 0:
        return None
    return float((n * sum(map(mul, ts, values)) - st * sum(values)) / denom * HOUR_MS)


def battery_series(samples: Sequence[HealthSample]) -> tuple[list[int], list[float]]:
    """(times, volts) of the samples that report a battery voltage."""
    return (
        [s.at_ms for s in samples if s.battery is not None],
        [s.battery for s in samples if s.battery is not None],
    )
