"""BME280 temperature, humidity and pressure sensor on I2C (Bosch BST-BME280-DS002).

Every read runs one forced-mode measurement (oversampling x1 for all three channels) and
compensates the raw values with the datasheet's integer formulas, so the board spends no
power between samples.

Wiring (simpul carrier board)::

    BME280 VIN -> 3V3, GND -> GND, SCL -> GPIO22, SDA -> GPIO21, SDO -> GND (address 0x76)

Usage::

    import asyncio
    from machine import I2C, Pin
    from bme280 import BME280

    bme = BME280(I2C(0, scl=Pin(22), sda=Pin(21)))
    print(asyncio.run(bme.read()))
    # [('temperature', 'Cel', 27.41), ('humidity', '%RH', 78.2), ('pressure', 'Pa', 100934)]
"""

import asyncio
import struct

from errors import SensorRange, SensorTimeout

try:
    from micropython import const
except ImportError:

    def const(x):  # type: ignore[misc]  # CPython: const is the identity
        return x


_CHIP_ID = const(0x60)
_REG_CALIB_TP = const(0x88)  # 0x88..0xA1: dig_T1..dig_P9, a reserved byte, dig_H1
_REG_CHIP_ID = const(0xD0)
_REG_CALIB_H = const(0xE1)  # 0xE1..0xE7: dig_H2..dig_H6
_REG_CTRL_HUM = const(0xF2)
_REG_STATUS = const(0xF3)
_REG_CTRL_MEAS = const(0xF4)
_REG_DATA = const(0xF7)  # 0xF7..0xFE: press[3], temp[3], hum[2]

_OSRS_H_X1 = const(0x01)
_CTRL_MEAS_FORCED_X1 = const(0x25)  # osrs_t x1 << 5 | osrs_p x1 << 2 | forced mode
_STATUS_MEASURING = const(0x08)

_SKIPPED_20 = const(0x80000)  # what T and P read when their measurement was skipped
_SKIPPED_16 = const(0x8000)  # the same for H

# A forced measurement at x1 takes at most 9.3 ms; poll every 2 ms, give up after 100 ms.
_FIRST_WAIT_S = 0.01
_POLL_S = 0.002
_MAX_POLLS = const(50)


def _tdiv(a, b):
    # C's integer division truncates toward zero; Python's // floors.
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


class BME280:
    name = "bme280"

    def __init__(self, i2c, address=0x76):
        self._i2c = i2c
        self._address = address
        self._one = bytearray(1)
        self._calib_tp = bytearray(26)
        self._calib_h = bytearray(7)
        self._data = bytearray(8)
        self._cal = None  # read at the first measurement, again after a chip id mismatch

    def _read(self, reg, buf):
        try:
            self._i2c.readfrom_mem_into(self._address, reg, buf)
        except OSError as e:
            raise SensorTimeout("bme280: no answer at 0x%02x (%s)" % (self._address, e)) from None

    def _write(self, reg, value):
        self._one[0] = value
        try:
            self._i2c.writeto_mem(self._address, reg, self._one)
        except OSError as e:
            raise SensorTimeout("bme280: no answer at 0x%02x (%s)" % (self._address, e)) from None

    def _check_chip(self):
        # Checked on every read: a swapped, reset or failing chip must not be trusted with
        # the calibration of the one that was there before.
        self._read(_REG_CHIP_ID, self._one)
        if self._one[0] != _CHIP_ID:
            self._cal = None
            raise SensorRange("bme280: chip id 0x%02x, expected 0x60" % self._one[0])

    def _load_calibration(self):
        self._read(_REG_CALIB_TP, self._calib_tp)
        self._read(_REG_CALIB_H, self._calib_h)
        tp = struct.unpack_from("<HhhHhhhhhhhh", self._calib_tp)
        h1 = self._calib_tp[25]  # 0xA1; 0xA0 is reserved
        h = self._calib_h
        h2, h3 = struct.unpack_from("<hB", h)
        e4 = h[3] - 256 if h[3] > 127 else h[3]
        e6 = h[5] - 256 if h[5] > 127 else h[5]
        h4 = (e4 << 4) | (h[4] & 0x0F)
        h5 = (e6 << 4) | (h[4] >> 4)
        h6 = h[6] - 256 if h[6] > 127 else h[6]
        # (T1, T2, T3, P1..P9, H1, H2, H3, H4, H5, H6)
        self._cal = tp + (h1, h2, h3, h4, h5, h6)

    async def _measure(self):
        self._write(_REG_CTRL_HUM, _OSRS_H_X1)  # takes effect with the ctrl_meas write
        self._write(_REG_CTRL_MEAS, _CTRL_MEAS_FORCED_X1)
        await asyncio.sleep(_FIRST_WAIT_S)
        for _ in range(_MAX_POLLS):
            self._read(_REG_STATUS, self._one)
            if not self._one[0] & _STATUS_MEASURING:
                break
            await asyncio.sleep(_POLL_S)
        else:
            raise SensorTimeout("bme280: measurement not done after %d polls" % _MAX_POLLS)
        self._read(_REG_DATA, self._data)
        d = self._data
        adc_p = (d[0] << 12) | (d[1] << 4) | (d[2] >> 4)
        adc_t = (d[3] << 12) | (d[4] << 4) | (d[5] >> 4)
        adc_h = (d[6] << 8) | d[7]
        return adc_t, adc_p, adc_h

    def _compensate(self, adc_t, adc_p, adc_h):
        cal = self._cal
        assert cal is not None  # read at the first measurement
        t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9, h1, h2, h3, h4, h5, h6 = cal

        # Temperature, 0.01 degC (datasheet 4.2.3, 32-bit).
        var1 = (((adc_t >> 3) - (t1 << 1)) * t2) >> 11
        var2 = (((((adc_t >> 4) - t1) * ((adc_t >> 4) - t1)) >> 12) * t3) >> 14
        t_fine = var1 + var2
        temp = (t_fine * 5 + 128) >> 8

        # Pressure, Pa in Q24.8 (64-bit).
        var1 = t_fine - 128000
        var2 = var1 * var1 * p6
        var2 = var2 + ((var1 * p5) << 17)
        var2 = var2 + (p4 << 35)
        var1 = ((var1 * var1 * p3) >> 8) + ((var1 * p2) << 12)
        var1 = (((1 << 47) + var1) * p1) >> 33
        if var1 == 0:
            raise SensorRange("bme280: pressure calibration gives a zero divisor")
        p = 1048576 - adc_p
        p = _tdiv(((p << 31) - var2) * 3125, var1)
        var1 = (p9 * (p >> 13) * (p >> 13)) >> 25
        var2 = (p8 * p) >> 19
        press = ((p + var1 + var2) >> 8) + (p7 << 4)

        # Humidity, %RH in Q22.10 (32-bit).
        x = t_fine - 76800
        v = (((adc_h << 14) - (h4 << 20) - (h5 * x)) + 16384) >> 15
        scale = ((((x * h6) >> 10) * (((x * h3) >> 11) + 32768)) >> 10) + 2097152
        v = v * ((scale * h2 + 8192) >> 14)
        v = v - (((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4)
        v = 0 if v < 0 else v
        v = 419430400 if v > 419430400 else v
        hum = v >> 12
        return temp, press, hum

    async def read(self):
        self._check_chip()
        if self._cal is None:
            self._load_calibration()
        adc_t, adc_p, adc_h = await self._measure()
        if adc_t == _SKIPPED_20 or adc_p == _SKIPPED_20 or adc_h == _SKIPPED_16:
            raise SensorRange(
                "bme280: measurement skipped (raw T/P/H %x/%x/%x)" % (adc_t, adc_p, adc_h)
            )
        temp, press, hum = self._compensate(adc_t, adc_p, adc_h)
        celsius = round(temp / 100, 2)
        pascal = (press + 128) >> 8
        rh = round(hum / 1024, 1)
        if not -40 <= celsius <= 85:
            raise SensorRange("bme280: temperature %s Cel out of -40..85" % celsius)
        if not 0 <= rh <= 100:
            raise SensorRange("bme280: humidity %s %%RH out of 0..100" % rh)
        if not 30000 <= pascal <= 110000:
            raise SensorRange("bme280: pressure %d Pa out of 30000..110000" % pascal)
        return [
            ("temperature", "Cel", celsius),
            ("humidity", "%RH", rh),
            ("pressure", "Pa", pascal),
        ]
