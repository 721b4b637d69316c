"""Board profiles: what is fitted to a simpul node of each kind, wired as on the real board.

``build_buses(kind, env, clock)`` assembles the emulated buses a ``Board.bus(name)`` hands
the firmware (``"i2c"``, ``"pms"``, ``"sonar"``, ``"vbat"``, only those fitted) with the
device models behind them, driven by a signal ``Environment`` at the board's ``clock()``
(epoch seconds). The result maps bus names to buses and keeps the models in ``devices`` so a
test or the engine can set faults::

    hw = build_buses("air", Environment(7, "tegal", "air"), clock)
    hw["i2c"]                        # the machine.I2C with the BME280 at 0x76
    hw.devices["pms5003"].fault = "timeout"

``build_hardware(kind, site, seed)`` does the same with a new ``Environment`` for that board
and the wall clock. The pins are the sensor carrier board's, from the firmware's own pin map
(``firmware/pins.py``), so the emulator is wired as the chip's ``board.py`` expects.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Final

from firmware.pins import PINS as _FIRMWARE_PINS
from hw.machine import ADC, I2C, UART, Device, Pin
from hw.sensors.battery import BatteryModel
from hw.sensors.bme280 import Bme280Model
from hw.sensors.jsnsr04t import JsnSr04tModel
from hw.sensors.pms5003 import Pms5003Model
from hw.signals import BIN_FULL_MM, Environment, Site, find_site

PINS: Final[Mapping[str, int]] = _FIRMWARE_PINS

BME280_ADDRESS: Final = 0x76
VBAT_RATIO: Final = 2.0

# Buses fitted to each kind of node.
FITTED: Final[Mapping[str, tuple[str, ...]]] = {
    "air": ("i2c", "pms", "vbat"),
    "water": ("i2c", "sonar", "vbat"),
    "bin": ("sonar", "vbat"),
}


class Hardware(Mapping[str, object]):
    """A node's buses by name (a read-only mapping) and the device models behind them."""

    def __init__(
        self,
        buses: dict[str, object],
        devices: dict[str, Device],
        config: dict[str, int] | None = None,
    ) -> None:
        self.buses = buses
        self.devices = devices
        self.config = config or {}  # the sensor settings a board so fitted is provisioned with

    def __getitem__(self, name: str) -> object:
        return self.buses[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.buses)

    def __len__(self) -> int:
        return len(self.buses)


def sensor_config(kind: str, env: Environment) -> dict[str, int]:
    """The sonar geometry a board of this kind at this site is configured with."""
    if kind == "water":
        return {"mount_mm": env.site.river_mount_mm}
    if kind == "bin":
        return {"bin_depth_mm": env.site.bin_depth_mm, "full_mm": BIN_FULL_MM}
    return {}


def build_buses(kind: str, env: Environment, clock: Callable[[], float]) -> Hardware:
    """The emulated buses and device models of a ``kind`` node living in ``env``."""
    if kind not in FITTED:
        raise ValueError(f"kind must be one of {tuple(FITTED)}, not {kind!r}")
    if env.kind != kind:
        raise ValueError(f"a {kind} node needs a {kind} environment, not {env.kind}")
    buses: dict[str, object] = {}
    devices: dict[str, Device] = {}
    fitted = FITTED[kind]
    seed = env.seed
    if "i2c" in fitted:
        bme = Bme280Model(lambda: env.air(clock()), seed=seed)
        devices["bme280"] = bme
        buses["i2c"] = I2C(
            0,
            scl=Pin(PINS["i2c_scl"]),
            sda=Pin(PINS["i2c_sda"]),
            devices={BME280_ADDRESS: bme},
        )
    if "pms" in fitted:
        pms = Pms5003Model(lambda: env.particulates(clock()), clock=clock, seed=seed)
        devices["pms5003"] = pms
        buses["pms"] = UART(1, 9600, tx=PINS["pms_tx"], rx=PINS["pms_rx"], timeout=0, device=pms)
    if "sonar" in fitted:
        sonar = JsnSr04tModel(lambda: env.sonar_mm(clock()), clock=clock, seed=seed)
        devices["jsnsr04t"] = sonar
        buses["sonar"] = UART(
            2, 9600, tx=PINS["sonar_tx"], rx=PINS["sonar_rx"], timeout=0, device=sonar
        )
    if "vbat" in fitted:
        battery = BatteryModel(lambda: env.battery(clock()), ratio=VBAT_RATIO)
        devices["battery"] = battery
        buses["vbat"] = ADC(Pin(PINS["vbat_adc"]), atten=ADC.ATTN_11DB, source=battery)
    return Hardware(buses, devices, sensor_config(kind, env))


def build_hardware(
    kind: str,
    site: str | Site,
    seed: int,
    *,
    clock: Callable[[], float] = time.time,
    world_seed: int = 0,
) -> Hardware:
    """``build_buses`` for a board of ``kind`` at ``site`` with its own ``Environment``."""
    return build_buses(kind, Environment(seed, site, kind, world_seed=world_seed), clock)


def site_code(site: str) -> str:
    """The short code of a site (``"Takengon"`` -> ``"TKN"``), used in board ids."""
    return find_site(site).code
