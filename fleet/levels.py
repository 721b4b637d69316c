"""What the operator's console shows of the city's data: ISPU, flood alert levels, bin fill.

Pure: no I/O, no clock. Each function takes values already in the units the boards send
(``fleet/health/quantities.py``: ``pm2_5`` and ``pm10`` in ug/m3, ``level`` in m, ``fill`` in
%) and returns a frozen status with a category and a colour. Every colour is a ``Colour``:
``hex`` for exactness and ``name``, a colour name that both Rich and Textual parse.

ISPU (Indeks Standar Pencemar Udara)
------------------------------------
Source: Peraturan Menteri Lingkungan Hidup dan Kehutanan Nomor
P.14/MENLHK/SETJEN/KUM.1/7/2020 tentang Indeks Standar Pencemar Udara (which replaced
Kepmen LH No. 45/1997), https://peraturan.bpk.go.id/Details/163466/permen-lhk-no-14-tahun-2020.
Its attachment (lampiran) gives the table that converts a pollutant's measured ambient
concentration to the index: one row per ISPU band (0-50, 51-100, 101-200, 201-300, >300),
with each pollutant's concentration at the top of that band. For the two particulates,
averaged over 24 hours ("24 jam"), in ug/m3:

    ISPU      PM10   PM2.5
     50         50    15.5
    100        150    55.4
    200        350   150.4
    300        420   250.4
    >300       500   500

The attachment's text could not be read here; the numbers above and the 24-hour averaging
come from two secondary copies of it, which agree: OpenAQ's AQI Hub
(github.com/openaq/aqi-hub, ``src/data/breakpoints/indonesia.csv``, adapted from KLHK's
"ISPU sebagai informasi mutu udara ambien di Indonesia", ditppu.menlhk.go.id, 24 Sept 2020)
and BMKG's PM2.5 bands as quoted by databoks.katadata.co.id (Baik 0-15.5, Sedang
15.6-55.4, Tidak Sehat 55.5-150.4, Sangat Tidak Sehat 150.5-250.4, Berbahaya >250.5).
Since this regulation KLHK announces the PM2.5 index every hour, the others at least
twice a day (CNBC Indonesia, 30 Aug 2023).

The categories and their colours: Baik (green), Sedang (blue), Tidak Sehat (yellow), Sangat
Tidak Sehat (red), Berbahaya (black). The hex values are OpenAQ's copy of KLHK's.

The regulation's formula is linear interpolation within a band::

    I = (Ia - Ib) / (Xa - Xb) * (Xx - Xb) + Ib

``Ia``/``Ib`` the band's upper/lower index, ``Xa``/``Xb`` its upper/lower concentration,
``Xx`` the measured one. The table gives each row's upper end only; the band's lower end is
the row before (0 below the first), so the index is continuous through the rows above.

Choices, where the copies read here are silent:

- Rounding: the index is rounded *up* to a whole number, so a concentration above a row's
  limit is in the next category, as the concentration bands BMKG and OpenAQ list say
  (PM2.5 15.6 is Sedang, 51, not 50.1 rounded to Baik). Rounding to nearest would differ by
  at most 1. The arithmetic is exact (``Fraction``), so a breakpoint gives its own index.
- Above 300 the row gives 500 ug/m3 for both and the index only as ">300"; the band is
  interpolated up to 500 there (the end of the scale in Kepmen LH 45/1997, which this one
  replaced). Above 500 ug/m3 (a PMS5003 reads up to 1000) the index is held at 500,
  Berbahaya, and ``capped`` says so; it is not extrapolated.
- The regulation averages over 24 hours. ``ispu`` converts whatever concentration it is
  given: the console shows it over the window it chose, and must say which.

Flood alert levels (Siaga)
--------------------------
Indonesian river gauges name four alert levels, from Siaga IV (lowest) to Siaga I (most
dangerous), each a water level in metres set per gauge (``Site.flood_levels``). Canonical
names are ``siaga4`` .. ``siaga1``; ``flood_level_name`` reads the common spellings.

Bin fill
--------
``fill_status``: empty below 10 %, filling below 75 %, nearly full below 90 %, full from 90 %:
the sonar sees the top of the heap, which is uneven, so a bin reading 90 % has no room for
a day's waste (``hw/signals.py``: a day fills 50..110 % of a bin).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from typing import Final, NamedTuple

from fleet.health.quantities import QUANTITIES


class Colour(NamedTuple):
    hex: str  # "#rrggbb"
    name: str  # a colour name both Rich and Textual parse


# --- ISPU ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IspuCategory:
    key: str
    name_id: str  # the regulation's word
    name_en: str
    low: int  # the band's ISPU range, inclusive; high None: no upper end
    high: int | None
    colour: Colour


BAIK: Final = IspuCategory("baik", "Baik", "Good", 0, 50, Colour("#34cc33", "green"))
SEDANG: Final = IspuCategory("sedang", "Sedang", "Moderate", 51, 100, Colour("#0070c0", "blue"))
TIDAK_SEHAT: Final = IspuCategory(
    "tidak_sehat", "Tidak Sehat", "Unhealthy", 101, 200, Colour("#ffc100", "yellow")
)
SANGAT_TIDAK_SEHAT: Final = IspuCategory(
    "sangat_tidak_sehat", "Sangat Tidak Sehat", "Very unhealthy", 201, 300, Colour("#ff0000", "red")
)
BERBAHAYA: Final = IspuCategory(
    "berbahaya", "Berbahaya", "Hazardous", 301, None, Colour("#000000", "black")
)
ISPU_CATEGORIES: Final = (BAIK, SEDANG, TIDAK_SEHAT, SANGAT_TIDAK_SEHAT, BERBAHAYA)

#: The top of the index: the ">300" row is interpolated to here, and higher is held here.
ISPU_MAX: Final = 500

#: PermenLHK P.14/MENLHK/SETJEN/KUM.1/7/2020, lampiran: (ISPU, concentration in ug/m3, 24 h
#: average) at the top of each band, from (0, 0). Keys are the SenML names the boards send.
ISPU_BREAKPOINTS: Final[Mapping[str, tuple[tuple[int, float], ...]]] = {
    "pm10": ((0, 0.0), (50, 50.0), (100, 150.0), (200, 350.0), (300, 420.0), (500, 500.0)),
    "pm2_5": ((0, 0.0), (50, 15.5), (100, 55.4), (200, 150.4), (300, 250.4), (500, 500.0)),
}


@dataclass(frozen=True, slots=True)
class Ispu:
    pollutant: str  # "pm2_5" or "pm10"
    concentration: float  # ug/m3, as given
    index: int
    category: IspuCategory
    #: The concentration is above the table's top: the index is held at ``ISPU_MAX``.
    capped: bool = False

    @property
    def colour(self) -> Colour:
        return self.category.colour


def ispu_category(index: int) -> IspuCategory:
    """The category of an ISPU value (0-50 Baik, ..., above 300 Berbahaya)."""
    if index < 0:
        raise ValueError(f"an ISPU is never negative, got {index}")
    for category in ISPU_CATEGORIES:
        if category.high is None or index <= category.high:
            return category
    raise AssertionError("unreachable: the last category has no upper end")


def ispu(pollutant: str, concentration: float) -> Ispu:
    """The ISPU sub-index of one pollutant's concentration (ug/m3)."""
    table = ISPU_BREAKPOINTS.get(pollutant)
    if table is None:
        raise ValueError(f"no ISPU for {pollutant!r}; known: {', '.join(ISPU_BREAKPOINTS)}")
    if not math.isfinite(concentration) or concentration < 0:
        raise ValueError(f"{pollutant} must be a finite concentration >= 0, got {concentration}")
    top_index, top = table[-1]
    if concentration > top:
        return Ispu(pollutant, concentration, top_index, ispu_category(top_index), capped=True)
    x = Fraction(concentration)
    for (ib, xb), (ia, xa) in pairwise(table):
        if concentration <= xa:
            exact = (ia - ib) * (x - Fraction(xb)) / (Fraction(xa) - Fraction(xb)) + ib
            index = math.ceil(exact)
            return Ispu(pollutant, concentration, index, ispu_category(index))
    raise AssertionError("unreachable: above the top was handled")


def ispu_of(readings: Mapping[str, float]) -> Ispu | None:
    """The ISPU of a set of readings: the highest sub-index of those present (None: none).

    Readings of other quantities (``pm1``, ``temperature``, ...) are ignored. A tie is
    reported as PM2.5, the pollutant KLHK publishes hourly.
    """
    subs = [ispu(p, readings[p]) for p in ("pm2_5", "pm10") if p in readings]
    return max(subs, key=lambda s: s.index, default=None)


# --- flood alert levels -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FloodLevel:
    key: str  # "normal", "siaga4" .. "siaga1"
    label: str
    colour: Colour


NORMAL: Final = FloodLevel("normal", "Normal", Colour("#34cc33", "green"))
FLOOD_LEVELS: Final = (
    FloodLevel("siaga4", "Siaga IV", Colour("#0070c0", "blue")),
    FloodLevel("siaga3", "Siaga III", Colour("#ffc100", "yellow")),
    FloodLevel("siaga2", "Siaga II", Colour("#ff0000", "red")),
    FloodLevel("siaga1", "Siaga I", Colour("#8f3f97", "purple")),
)
_FLOOD_BY_KEY: Final = {level.key: level for level in FLOOD_LEVELS}
_ROMAN: Final = {"i": 1, "ii": 2, "iii": 3, "iv": 4}
_FLOOD_NAME: Final = re.compile(r"(?:siaga)?[\s_-]*(iv|iii|ii|i|[1-4])")


def flood_level_name(text: str) -> str:
    """The canonical name (``siaga4`` .. ``siaga1``) of a spelling of a flood alert level.

    Accepted, in any case: ``siaga4``, ``siaga 4``, ``siaga_4``, ``siaga-4``, the same with
    a Roman numeral (``Siaga IV``, ``siaga_iv``), and the bare number (``IV``, ``4``).
    """
    match = _FLOOD_NAME.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(
            f"{text!r} is not a flood alert level; write siaga4 .. siaga1 "
            "(or 'Siaga IV', 'siaga_iv', 'IV', '4')"
        )
    number = match.group(1)
    return f"siaga{_ROMAN.get(number) or int(number)}"


def flood_thresholds(thresholds: Mapping[str, float]) -> dict[str, float]:
    """Thresholds by canonical name, checked: finite, >= 0 m, rising from Siaga IV to I.

    A gauge may set only some of the four levels; at least one is needed.
    """
    canonical: dict[str, float] = {}
    for name, metres in thresholds.items():
        key = flood_level_name(name)
        if key in canonical:
            raise ValueError(f"flood level {key} is given twice (as {name!r} too)")
        if not math.isfinite(metres) or metres < 0:
            raise ValueError(f"flood level {name!r} must be a finite level >= 0 m, got {metres}")
        canonical[key] = metres
    if not canonical:
        raise ValueError("no flood levels set")
    ordered = [(k.key, canonical[k.key]) for k in FLOOD_LEVELS if k.key in canonical]
    for (lower, low_m), (higher, high_m) in pairwise(ordered):
        if high_m <= low_m:
            raise ValueError(
                f"flood levels must rise from Siaga IV to Siaga I: "
                f"{higher} ({high_m:g} m) is not above {lower} ({low_m:g} m)"
            )
    return dict(ordered)


@dataclass(frozen=True, slots=True)
class FloodStatus:
    level_m: float
    #: The highest alert level the water has reached (``NORMAL`` below all of them).
    reached: FloodLevel
    #: The next alert level up and the metres of water still below it (None: at the top).
    next_level: FloodLevel | None
    margin_m: float | None

    @property
    def colour(self) -> Colour:
        return self.reached.colour


def flood_level(level_m: float, thresholds: Mapping[str, float]) -> FloodStatus:
    """Which flood alert level a water level (m) reaches at a gauge with these thresholds.

    A level is reached when the water is at or above its threshold.
    """
    checked = flood_thresholds(thresholds)
    if not math.isfinite(level_m) or level_m < 0:
        raise ValueError(f"the water level must be a finite level >= 0 m, got {level_m}")
    reached = NORMAL
    for key, metres in checked.items():
        if level_m < metres:
            return FloodStatus(level_m, reached, _FLOOD_BY_KEY[key], metres - level_m)
        reached = _FLOOD_BY_KEY[key]
    return FloodStatus(level_m, reached, None, None)


# --- bin fill -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FillBand:
    key: str
    label: str
    low: float  # percent, inclusive
    colour: Colour


FILL_BANDS: Final = (
    FillBand("empty", "empty", 0.0, Colour("#34cc33", "green")),
    FillBand("filling", "filling", 10.0, Colour("#0070c0", "blue")),
    FillBand("nearly_full", "nearly full", 75.0, Colour("#ffc100", "yellow")),
    FillBand("full", "full", 90.0, Colour("#ff0000", "red")),
)


@dataclass(frozen=True, slots=True)
class FillStatus:
    percent: float
    band: FillBand

    @property
    def colour(self) -> Colour:
        return self.band.colour


def fill_status(percent: float) -> FillStatus:
    """How full a bin is, from its ``fill`` reading (0..100 %)."""
    high = QUANTITIES["fill"].high
    if not math.isfinite(percent) or not 0 <= percent <= high:
        raise ValueError(f"fill must be a finite 0..{high:g} %, got {percent}")
    band = FILL_BANDS[0]
    for candidate in FILL_BANDS:
        if percent >= candidate.low:
            band = candidate
    return FillStatus(percent, band)
