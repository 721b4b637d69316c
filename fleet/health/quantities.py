"""What each SenML quantity a simpul board reports can physically be.

Names and units are those the firmware's drivers emit (``firmware/bme280.py``,
``pms5003.py``, ``jsnsr04t.py``, ``battery.py``) and the gateway stores. A value outside
``[low, high]`` cannot be a true measurement by that sensor; the bounds come from the
sensors' datasheets and from how the value is derived, not from the weather.

``resolution`` is the smallest spread that counts as real variation: a board whose baseline
standard deviation is below it (a bin that stays empty, a steady pressure) is judged against
this instead, so a tiny change is not "far from its baseline".
"""

from __future__ import annotations

from typing import Final, NamedTuple


class Quantity(NamedTuple):
    name: str  # SenML "n"
    unit: str  # SenML "u" (RFC 8428 §12.1)
    low: float
    high: float
    resolution: float
    why: str


QUANTITIES: Final[dict[str, Quantity]] = {
    q.name: q
    for q in (
        Quantity("temperature", "Cel", -40.0, 85.0, 0.5, "BME280 operating range"),
        Quantity("humidity", "%RH", 0.0, 100.0, 2.0, "relative humidity"),
        Quantity("pressure", "Pa", 30_000.0, 110_000.0, 50.0, "BME280 range, 300..1100 hPa"),
        Quantity("pm1", "ug/m3", 0.0, 1000.0, 5.0, "PMS5003 maximum range"),
        Quantity("pm2_5", "ug/m3", 0.0, 1000.0, 5.0, "PMS5003 maximum range"),
        Quantity("pm10", "ug/m3", 0.0, 1000.0, 5.0, "PMS5003 maximum range"),
        Quantity("distance", "m", 0.2, 6.0, 0.01, "JSN-SR04T range, 200..6000 mm"),
        Quantity("level", "m", 0.0, 30.0, 0.01, "water above the bed: below 0, mount_mm is wrong"),
        Quantity("fill", "%", 0.0, 100.0, 1.0, "share of the bin's depth"),
        Quantity("battery", "V", 2.5, 4.5, 0.05, "one Li-ion cell; 0 V: divider open"),
    )
}
