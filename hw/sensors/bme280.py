"""The BME280 (temperature, humidity, pressure) on I2C, as the firmware's ``bme280.py`` meets it.

The chip's register map with a calibration block, and raw ADC values found by inverting the
datasheet's compensation, so the driver reads the target back. ``Bme280Model(source)`` takes
a callable giving (degC, %RH, Pa) at the board's time (``hw/signals.py``); put it on an
``hw.machine.I2C`` at 0x76::

    i2c = I2C(0, devices={0x76: Bme280Model(lambda: (27.5, 80.0, 100900.0))})
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from typing import Final, NamedTuple

from hw.machine import I2CDevice

BME280_CHIP_ID: Final = 0x60
_REG_CALIB_TP: Final = 0x88
_REG_CHIP_ID: Final = 0xD0
_REG_RESET: Final = 0xE0
_REG_CALIB_H: Final = 0xE1
_REG_CTRL_HUM: Final = 0xF2
_REG_STATUS: Final = 0xF3
_REG_CTRL_MEAS: Final = 0xF4
_REG_CONFIG: Final = 0xF5
_REG_DATA: Final = 0xF7
_SOFT_RESET: Final = 0xB6
_STATUS_MEASURING: Final = 0x08
_SKIPPED_DATA: Final = b"\x80\x00\x00\x80\x00\x00\x80\x00"  # the data registers' reset values


class Bme280Calibration(NamedTuple):
    """The trimming parameters in the chip's NVM (datasheet table 16)."""

    t1: int
    t2: int
    t3: int
    p1: int
    p2: int
    p3: int
    p4: int
    p5: int
    p6: int
    p7: int
    p8: int
    p9: int
    h1: int
    h2: int
    h3: int
    h4: int
    h5: int
    h6: int

    def registers(self) -> tuple[bytes, bytes]:
        """The bytes of 0x88..0xA1 and of 0xE1..0xE7, as the chip stores them."""
        tp = struct.pack("<HhhHhhhhhhhh", *self[:12]) + b"\x00" + struct.pack("<B", self.h1)
        e4 = (self.h4 >> 4) & 0xFF
        e5 = (self.h4 & 0x0F) | ((self.h5 & 0x0F) << 4)
        e6 = (self.h5 >> 4) & 0xFF
        h = struct.pack("<hBBBBb", self.h2, self.h3, e4, e5, e6, self.h6)
        return tp, h


# T and P: the worked example of Bosch's BMP280 datasheet (same formulas as the BME280);
# H: values typical of production BME280 parts.
DATASHEET_CALIBRATION: Final = Bme280Calibration(
    27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000,
    75, 362, 0, 313, 50, 30,
)  # fmt: skip


def compensate_temperature(cal: Bme280Calibration, adc_t: int) -> tuple[int, int]:
    """Datasheet 4.2.3: (temperature in 0.01 degC, t_fine)."""
    var1 = (((adc_t >> 3) - (cal.t1 << 1)) * cal.t2) >> 11
    var2 = (((((adc_t >> 4) - cal.t1) * ((adc_t >> 4) - cal.t1)) >> 12) * cal.t3) >> 14
    t_fine = var1 + var2
    return (t_fine * 5 + 128) >> 8, t_fine


def compensate_pressure(cal: Bme280Calibration, adc_p: int, t_fine: int) -> int:
    """Datasheet 4.2.3, 64-bit: pressure in Pa as Q24.8 (divide by 256)."""
    var1 = t_fine - 128000
    var2 = var1 * var1 * cal.p6 + ((var1 * cal.p5) << 17) + (cal.p4 << 35)
    var1 = ((var1 * var1 * cal.p3) >> 8) + ((var1 * cal.p2) << 12)
    var1 = (((1 << 47) + var1) * cal.p1) >> 33
    if var1 == 0:
        return 0
    p = 1048576 - adc_p
    num = ((p << 31) - var2) * 3125
    p = abs(num) // abs(var1) * (1 if (num < 0) == (var1 < 0) else -1)  # C truncation
    var1 = (cal.p9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (cal.p8 * p) >> 19
    return ((p + var1 + var2) >> 8) + (cal.p7 << 4)


def compensate_humidity(cal: Bme280Calibration, adc_h: int, t_fine: int) -> int:
    """Datasheet 4.2.3: relative humidity in % as Q22.10 (divide by 1024)."""
    x = t_fine - 76800
    v = (((adc_h << 14) - (cal.h4 << 20) - (cal.h5 * x)) + 16384) >> 15
    scale = ((((x * cal.h6) >> 10) * (((x * cal.h3) >> 11) + 32768)) >> 10) + 2097152
    v = v * ((scale * cal.h2 + 8192) >> 14)
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * cal.h1) >> 4)
    return min(max(v, 0), 419430400) >> 12


def _nearest(f: Callable[[int], int], target: int, lo: int, hi: int, increasing: bool) -> int:
    """The x in [lo, hi] whose monotonic f(x) is nearest ``target``, by bisection."""
    sign = 1 if increasing else -1
    a, b = lo, hi
    while a < b:
        mid = (a + b) // 2
        if sign * f(mid) < sign * target:
            a = mid + 1
        else:
            b = mid
    if a > lo and abs(f(a - 1) - target) <= abs(f(a) - target):
        return a - 1
    return a


def raw_for(
    cal: Bme280Calibration, temperature: float, humidity: float, pressure: float
) -> tuple[int, int, int]:
    """Raw (adc_T, adc_P, adc_H) for which the compensation gives the targets back."""
    adc_t = _nearest(
        lambda a: compensate_temperature(cal, a)[0], round(temperature * 100), 0, 0xFFFFF, True
    )
    t_fine = compensate_temperature(cal, adc_t)[1]
    adc_p = _nearest(
        lambda a: compensate_pressure(cal, a, t_fine), round(pressure * 256), 0, 0xFFFFF, False
    )
    adc_h = _nearest(
        lambda a: compensate_humidity(cal, a, t_fine), round(humidity * 1024), 0, 0xFFFF, True
    )
    return adc_t, adc_p, adc_h


class Bme280Model(I2CDevice):
    """A BME280 at its I2C address: chip id, calibration, control, status and data registers.

    A forced-mode trigger (ctrl_meas mode 01/10) samples ``source()`` -> (degC, %RH, Pa),
    reports "measuring" in the status register for ``conversion_polls`` status reads, then
    publishes the raw values and returns to sleep mode. Channels whose oversampling is 0 are
    skipped (0x80000 / 0x8000), and ctrl_hum takes effect only with a ctrl_meas write, as on
    the chip. Under the ``"garbage"`` fault every register reads random bytes, and the chip id
    is never 0x60.
    """

    def __init__(
        self,
        source: Callable[[], tuple[float, float, float]],
        *,
        calibration: Bme280Calibration = DATASHEET_CALIBRATION,
        seed: int = 0,
        conversion_polls: int = 1,
    ) -> None:
        self.source = source
        self.calibration = calibration
        self.conversion_polls = conversion_polls
        self._rng = random.Random(seed)
        self.regs = bytearray(256)
        tp, h = calibration.registers()
        self.regs[_REG_CALIB_TP : _REG_CALIB_TP + len(tp)] = tp
        self.regs[_REG_CALIB_H : _REG_CALIB_H + len(h)] = h
        self.regs[_REG_CHIP_ID] = BME280_CHIP_ID
        self.measurements = 0
        self._reset()

    def _reset(self) -> None:
        for reg in (_REG_CTRL_HUM, _REG_STATUS, _REG_CTRL_MEAS, _REG_CONFIG):
            self.regs[reg] = 0
        self.regs[_REG_DATA : _REG_DATA + 8] = _SKIPPED_DATA
        self._osrs_h = 0
        self._busy = 0
        self._result = _SKIPPED_DATA

    def _sample(self) -> bytes:
        temperature, humidity, pressure = self.source()
        adc_t, adc_p, adc_h = raw_for(self.calibration, temperature, humidity, pressure)
        ctrl = self.regs[_REG_CTRL_MEAS]
        if not ctrl >> 5:
            adc_t = 0x80000
        if not (ctrl >> 2) & 0x07:
            adc_p = 0x80000
        if not self._osrs_h & 0x07:
            adc_h = 0x8000
        self.measurements += 1
        return bytes(
            (adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0x0F) << 4,
             adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0x0F) << 4,
             adc_h >> 8, adc_h & 0xFF)
        )  # fmt: skip

    def _publish(self) -> None:
        self.regs[_REG_DATA : _REG_DATA + 8] = self._result
        self.regs[_REG_STATUS] = 0
        self.regs[_REG_CTRL_MEAS] &= 0xFC  # back to sleep mode

    def read(self, reg: int, n: int) -> bytes:
        if self.fault == "garbage":
            data = bytearray(self._rng.getrandbits(8) for _ in range(n))
            if reg <= _REG_CHIP_ID < reg + n and data[_REG_CHIP_ID - reg] == BME280_CHIP_ID:
                data[_REG_CHIP_ID - reg] ^= 0xFF
            return bytes(data)
        if reg <= _REG_STATUS < reg + n and self._busy:
            self._busy -= 1
            if not self._busy:
                self._publish()
            else:
                self.regs[_REG_STATUS] = _STATUS_MEASURING
        if (
            self.regs[_REG_CTRL_MEAS] & 0x03 == 0x03
            and reg <= _REG_DATA + 7
            and reg + n > _REG_DATA
        ):
            self._result = self._sample()  # normal mode: always a fresh conversion
            self.regs[_REG_DATA : _REG_DATA + 8] = self._result
        return bytes(self.regs[reg + i & 0xFF] for i in range(n))

    def write(self, reg: int, data: bytes) -> None:
        # On I2C the chip takes (register, value) pairs: reg, d0, then d1 names a register...
        pairs = [(reg, data[0])] if data else []
        pairs += [(data[i], data[i + 1]) for i in range(1, len(data) - 1, 2)]
        for r, value in pairs:
            if self.fault == "garbage":
                continue
            if r == _REG_RESET and value == _SOFT_RESET:
                self._reset()
            elif r == _REG_CTRL_HUM:
                self.regs[r] = value & 0x07
            elif r == _REG_CONFIG:
                self.regs[r] = value
            elif r == _REG_CTRL_MEAS:
                self.regs[r] = value
                self._osrs_h = self.regs[_REG_CTRL_HUM]
                if value & 0x03 in (0x01, 0x02):
                    self._result = self._sample()
                    if self.conversion_polls:
                        self._busy = self.conversion_polls + 1
                        self.regs[_REG_STATUS] = _STATUS_MEASURING
                    else:
                        self._publish()
