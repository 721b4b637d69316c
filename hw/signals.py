"""The physical world a simpul node measures: seeded, reproducible, plausible signals.

Every value is a pure function of seeds, the site and the epoch time in seconds; nothing is
integrated step by step, so a board can jump in time, and two runs with the same seeds agree
exactly. Daily cycles follow local time in WIB (UTC+7).

Weather (storms, haze from burning, cloudiness, the day's warmth, missed bin collections) is
shared by every board at a site (``world_seed`` and the site name); what differs between two
boards (sensor offsets, noise, how fast a bin fills, when the truck reaches it) comes from the
board's own ``seed``.

- temperature: warmest about 14:00, coolest about 06:00; 24..33 degC in the lowlands, 6.5 degC
  cooler per km of altitude (Takengon at 1200 m: about 15..25 degC); storms cool it;
- humidity: inversely with the temperature, 55..95 %RH, near saturation in rain;
- pressure: the barometric formula from about 1010 hPa at sea level (about 880 hPa at
  1200 m), the semi-diurnal atmospheric tide (peaks near 10:00 and 22:00), slow weather;
- PM2.5: a site baseline, rush-hour peaks (06:30..08:30, 16:30..19:00), episodes of open
  burning lasting hours, rain washing it out; PM1 about 0.7x and PM10 about 1.6x PM2.5;
- rain: afternoon storms on some days; the river rises during and after one, then recedes;
- bins: fill through the day, emptied when the truck passes (about 06:00), unless it doesn't;
- battery on solar: charges by day to 3.85..4.15 V (by the day's sun), discharges by night.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from typing import Final, NamedTuple

WIB_OFFSET_S: Final = 7 * 3600
DAY_S: Final = 86400
HOUR_S: Final = 3600

KINDS: Final = ("air", "water", "bin")


class Site(NamedTuple):
    """A place where boards are installed."""

    name: str
    code: str  # short code used in board ids
    altitude_m: float
    river_mount_mm: int  # river gauge: sensor face above the gauge datum
    river_base_mm: int  # river stage above the datum between storms
    bin_depth_mm: int  # waste bin: sensor face to the empty bin's floor
    pm_base: float  # PM2.5 baseline, ug/m3


SITES: Final[dict[str, Site]] = {
    "takengon": Site("Takengon", "TKN", 1200.0, 4200, 900, 1100, 18.0),
    "tegal": Site("Tegal", "TGL", 5.0, 3800, 700, 1200, 22.0),
    "cimahi": Site("Cimahi", "CMH", 760.0, 4500, 800, 1200, 32.0),
    "tarutung": Site("Tarutung", "TRT", 950.0, 4000, 850, 1000, 16.0),
    "pematang_siantar": Site("Pematang Siantar", "PMS", 400.0, 4300, 750, 1100, 24.0),
}


def find_site(name: str) -> Site:
    """A site by key (``"pematang_siantar"``), name (``"Pematang Siantar"``) or code."""
    key = name.strip().lower().replace(" ", "_")
    for slug, site in SITES.items():
        if key in (slug, site.code.lower()):
            return site
    raise KeyError(f"no site {name!r}; known: {', '.join(s.name for s in SITES.values())}")


BIN_FULL_MM: Final = 250  # sensor face to the rim: the level of a full bin
COLLECTION_HOUR: Final = 6.0  # the truck leaves the depot at 06:00 WIB


def local_hours(t: float) -> float:
    """Hours since local (WIB) midnight, 0 <= h < 24."""
    return ((t + WIB_OFFSET_S) % DAY_S) / HOUR_S


def local_day(t: float) -> int:
    """The local (WIB) day number since the epoch."""
    return int((t + WIB_OFFSET_S) // DAY_S)


def day_start(day: int) -> float:
    """Epoch seconds of local midnight starting ``day``."""
    return day * DAY_S - WIB_OFFSET_S


def _unit(*keys: int | str) -> float:
    """A deterministic uniform number in [0, 1) for these keys."""
    digest = hashlib.blake2b(repr(keys).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def _smooth(t: float, period: float, *keys: int | str) -> float:
    """Smooth deterministic noise in [-1, 1], changing over about ``period`` seconds."""
    i = math.floor(t / period)
    f = t / period - i
    a = 2 * _unit(*keys, i) - 1
    b = 2 * _unit(*keys, i + 1) - 1
    w = (1 - math.cos(math.pi * f)) / 2
    return a + (b - a) * w


def _bump(x: float) -> float:
    """0 outside [0, 1], a smooth hump peaking at 1 in the middle."""
    return math.sin(math.pi * x) ** 2 if 0 < x < 1 else 0.0


def _diurnal(h: float) -> float:
    """-1 at 06:00, +1 at 14:00; warms for 8 hours, cools for 16."""
    if 6 <= h < 14:
        return -math.cos(math.pi * (h - 6) / 8)
    return math.cos(math.pi * ((h - 14) % 24) / 16)


class Storm(NamedTuple):
    start: float  # epoch seconds
    duration_s: float
    peak_mm_h: float

    @property
    def end(self) -> float:
        return self.start + self.duration_s

    @property
    def total_mm(self) -> float:
        return self.peak_mm_h * self.duration_s / HOUR_S / 2  # mean of sin^2 is 1/2


class Burning(NamedTuple):
    start: float
    duration_s: float
    peak: float  # extra PM2.5 at the height of it, ug/m3


class Environment:
    """The world around one board: ``Environment(seed, site, kind)``.

    ``site`` is a ``Site`` or a site's key, name or code (``find_site``); ``kind`` is
    ``"air"``, ``"water"`` or ``"bin"`` and decides what ``sonar_mm`` looks at. Methods take
    epoch seconds.
    """

    STORM_CHANCE: Final = 0.35
    BURNING_CHANCE: Final = 0.2
    MISSED_COLLECTION_CHANCE: Final = 0.1
    STAGE_MM_PER_RAIN_MM: Final = 25.0
    RECESSION_S: Final = 8 * HOUR_S

    def __init__(self, seed: int, site: Site | str, kind: str, *, world_seed: int = 0) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        self.seed = seed
        self.site = find_site(site) if isinstance(site, str) else site
        self.kind = kind
        self.world_seed = world_seed

    # Keys: weather is the site's, noise the board's.
    def _w(self, *keys: int | str) -> float:
        return _unit("weather", self.world_seed, self.site.name, *keys)

    def _b(self, *keys: int | str) -> float:
        return _unit("board", self.seed, self.site.name, self.kind, *keys)

    def _noise(self, t: float, period: float, name: str) -> float:
        return _smooth(t, period, "board", self.seed, self.site.name, self.kind, name)

    # --- weather events ---------------------------------------------------------------

    def storm(self, day: int) -> Storm | None:
        """The afternoon storm of a local day, if there is one."""
        if self._w("storm", day) >= self.STORM_CHANCE:
            return None
        start = day_start(day) + (13.0 + 4.5 * self._w("storm-start", day)) * HOUR_S
        duration = (0.75 + 2.25 * self._w("storm-length", day)) * HOUR_S
        return Storm(start, duration, 5.0 + 40.0 * self._w("storm-rain", day))

    def burning(self, day: int) -> Burning | None:
        """An episode of open burning starting on a local day, if there is one."""
        if self._w("burning", day) >= self.BURNING_CHANCE:
            return None
        start = day_start(day) + (16.0 + 6.0 * self._w("burning-start", day)) * HOUR_S
        duration = (2.0 + 4.0 * self._w("burning-length", day)) * HOUR_S
        return Burning(start, duration, 60.0 + 160.0 * self._w("burning-peak", day))

    def _storms(self, t: float, days_back: int) -> list[Storm]:
        today = local_day(t)
        found = (self.storm(d) for d in range(today - days_back, today + 1))
        return [s for s in found if s is not None and s.start <= t]

    def rain(self, t: float) -> float:
        """Rain rate, mm/h."""
        return sum(s.peak_mm_h * _bump((t - s.start) / s.duration_s) for s in self._storms(t, 1))

    def wetness(self, t: float) -> float:
        """1 while it rains, fading over the hours after: what rain does to air and PM."""
        w = 0.0
        for s in self._storms(t, 1):
            w = max(w, 1.0 if t < s.end else math.exp(-(t - s.end) / (1.5 * HOUR_S)))
        return w

    def sunshine(self, day: int) -> float:
        """How sunny a local day is, 0.3 (overcast) .. 1 (clear)."""
        cloud = 0.4 * self._w("cloud", day) + (0.3 if self.storm(day) else 0.0)
        return 1.0 - cloud

    # --- air --------------------------------------------------------------------------

    def _warmth(self, t: float) -> float:
        alt = self.site.altitude_m
        mean = 28.5 - 0.0065 * alt + 0.8 * _smooth(t, DAY_S, "weather", self.world_seed, "warm")
        return mean + 4.2 * _diurnal(local_hours(t))

    def temperature(self, t: float) -> float:
        """Air temperature, degC."""
        offset = 0.6 * self._b("t-offset") - 0.3 + 0.15 * self._noise(t, 600, "t")
        return self._warmth(t) - 3.0 * self.wetness(t) + offset

    def humidity(self, t: float) -> float:
        """Relative humidity, %RH."""
        dry = 75.0 - 20.0 * _diurnal(local_hours(t))  # 95 at dawn, 55 in the afternoon
        wet = self.wetness(t)
        rh = dry + (97.0 - dry) * wet + 1.5 * self._noise(t, 900, "rh")
        return min(100.0, max(30.0, rh))

    def pressure(self, t: float) -> float:
        """Station pressure, Pa."""
        sea = 101000.0 + 200.0 * _smooth(t, 3 * DAY_S, "weather", self.world_seed, "synoptic")
        station = sea * math.pow(1 - 2.25577e-5 * self.site.altitude_m, 5.25588)
        tide = 120.0 * station / 101325.0 * math.cos(2 * math.pi * (local_hours(t) - 10) / 12)
        return station + tide + 5.0 * self._noise(t, 300, "p")

    def air(self, t: float) -> tuple[float, float, float]:
        """(temperature degC, humidity %RH, pressure Pa), what a BME280 measures."""
        return self.temperature(t), self.humidity(t), self.pressure(t)

    def pm2_5(self, t: float) -> float:
        """PM2.5, ug/m3."""
        h = local_hours(t)
        base = self.site.pm_base * (0.7 + 0.6 * self._w("pm-day", local_day(t)))
        rush = 1.4 * math.exp(-(((h - 7.5) / 0.55) ** 2) / 2)
        rush += 1.2 * math.exp(-(((h - 17.75) / 0.7) ** 2) / 2)
        night = 0.8 if h < 5 or h >= 22 else 0.9
        smoke = 0.0
        today = local_day(t)
        for d in (today - 1, today):
            b = self.burning(d)
            if b is not None:
                smoke += b.peak * _bump((t - b.start) / b.duration_s)
        level = base * (night + rush) + smoke
        level *= 1 - 0.6 * self.wetness(t)
        level *= 1 + 0.12 * self._noise(t, 300, "pm")
        return min(999.0, max(0.0, level))

    def particulates(self, t: float) -> tuple[float, float, float]:
        """(PM1, PM2.5, PM10) in ug/m3, what a PMS5003 measures."""
        pm2_5 = self.pm2_5(t)
        pm1 = pm2_5 * (0.7 + 0.03 * self._noise(t, 300, "pm1"))
        pm10 = pm2_5 * (1.6 + 0.08 * self._noise(t, 300, "pm10"))
        return pm1, pm2_5, min(999.0, pm10)

    # --- water ------------------------------------------------------------------------

    def river_level_mm(self, t: float) -> float:
        """River stage above the gauge datum, mm."""
        stage = self.site.river_base_mm + 30.0 * _smooth(t, DAY_S, "weather", self.site.name)
        for s in self._storms(t, 4):
            rise = self.STAGE_MM_PER_RAIN_MM * s.total_mm
            lag = 0.5 * HOUR_S
            peak_at = s.end + HOUR_S  # the catchment keeps draining into the river
            if t < s.start + lag:
                continue
            if t < peak_at:
                x = (t - s.start - lag) / (peak_at - s.start - lag)
                stage += rise * x * x * (3 - 2 * x)
            else:
                stage += rise * math.exp(-(t - peak_at) / self.RECESSION_S)
        stage += 5.0 * self._noise(t, 60, "ripple")
        # Above bank-full the water spreads over the floodplain instead of rising.
        return min(stage, self.site.river_mount_mm - 350.0)

    # --- bins -------------------------------------------------------------------------

    def collected(self, day: int) -> bool:
        """Whether the truck came on a local day (the whole site's route)."""
        return self._w("missed", day) >= self.MISSED_COLLECTION_CHANCE

    def collection_time(self, day: int) -> float:
        """When the truck empties this board's bin on a local day (epoch seconds)."""
        return day_start(day) + (COLLECTION_HOUR + 1.5 * self._b("route")) * HOUR_S

    def _waste(self, day: int) -> float:
        """The share of the bin filled by one day's waste (0.5 .. 1.1)."""
        return 0.5 + 0.6 * self._b("waste", day)

    def bin_fill(self, t: float) -> float:
        """How full the bin is, 0 (empty) .. 1 (level with the rim)."""
        day = local_day(t)
        if t < self.collection_time(day):
            day -= 1  # before today's pass: still filling since yesterday's
        fill = 0.0
        for back in range(7):
            d = day - back
            since = self.collection_time(d)
            until = min(t, self.collection_time(d + 1))
            fill += self._waste(d) * (
                _waste_share(until - day_start(d)) - _waste_share(since - day_start(d))
            )
            if self.collected(d):
                break
        return min(1.0, fill)

    # --- what the sonar sees ----------------------------------------------------------

    def sonar_mm(self, t: float) -> float:
        """Distance from a JSN-SR04T's face to the water or the waste, mm."""
        if self.kind == "water":
            return self.site.river_mount_mm - self.river_level_mm(t)
        if self.kind == "bin":
            depth = self.site.bin_depth_mm
            rough = 5.0 * self._noise(t, 600, "heap")
            return depth - self.bin_fill(t) * (depth - BIN_FULL_MM) + rough
        raise ValueError("an air node has no sonar")

    # --- power ------------------------------------------------------------------------

    def battery(self, t: float) -> float:
        """Battery terminal voltage on solar, V (3.5 .. 4.15)."""
        day = local_day(t)
        h = local_hours(t)
        aging = -0.03 * self._b("aging")

        def top(d: int) -> float:
            return 3.85 + 0.3 * self.sunshine(d)

        def drop(d: int) -> float:
            return 0.25 + 0.1 * self._b("load", d)

        if h < 6.5:  # still the night that began yesterday at 18:00
            v = top(day - 1) - drop(day - 1) * (h + 6) / 12.5
        elif h < 13:
            dawn = top(day - 1) - drop(day - 1)
            x = (h - 6.5) / 6.5
            v = dawn + (top(day) - dawn) * x * x * (3 - 2 * x)
        elif h < 18:
            v = top(day)
        else:
            v = top(day) - drop(day) * (h - 18) / 12.5
        return v + aging + 0.004 * self._noise(t, 120, "vbat")


def _waste_rate(h: float) -> float:
    """Relative rate at which waste is thrown away at local hour h (busy noon and evening)."""
    if h < 5 or h >= 23:
        return 0.05
    return (
        0.3 + math.exp(-(((h - 12) / 2.5) ** 2) / 2) + 0.8 * math.exp(-(((h - 19) / 1.5) ** 2) / 2)
    )


_STEPS_PER_HOUR: Final = 4
_CUMULATIVE: Final = tuple(
    itertools.accumulate(
        (_waste_rate((i + 0.5) / _STEPS_PER_HOUR) for i in range(24 * _STEPS_PER_HOUR)),
        initial=0.0,
    )
)


def _waste_share(seconds: float) -> float:
    """Share of a day's waste thrown away between local midnight and ``seconds`` after it.

    Runs past 1 beyond 24 hours (the next day's waste at the same daily rate).
    """
    hours = seconds / HOUR_S
    days = math.floor(hours / 24)
    pos = (hours - 24 * days) * _STEPS_PER_HOUR
    i = min(int(pos), len(_CUMULATIVE) - 2)
    part = _CUMULATIVE[i] + (_CUMULATIVE[i + 1] - _CUMULATIVE[i]) * (pos - i)
    return days + part / _CUMULATIVE[-1]
