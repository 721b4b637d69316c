"""Plantower PMS5003 particulate matter sensor on a UART, in passive mode.

The sensor starts in active mode, streaming a frame every second or so. At the first read the
driver switches it to passive mode; each read then asks for one frame and decodes the
atmospheric-environment concentrations (PM1.0, PM2.5, PM10 in ug/m3).

A frame is 32 bytes: ``42 4D``, a frame length of 28 (u16 BE), thirteen u16 BE data words,
and a checksum (u16 BE) that is the sum of the first 30 bytes.

Wiring (simpul carrier board)::

    PMS5003 VCC -> 5V, GND -> GND, TXD -> GPIO16 (ESP32 RX), RXD -> GPIO17 (ESP32 TX)
    SET and RESET left unconnected (internal pull-ups: running)

Usage::

    import asyncio
    from machine import UART
    from pms5003 import PMS5003

    pms = PMS5003(UART(1, 9600, tx=17, rx=16, timeout=0))
    print(asyncio.run(pms.read()))
    # [('pm1', 'ug/m3', 12), ('pm2_5', 'ug/m3', 18), ('pm10', 'ug/m3', 27)]
"""

import asyncio
import struct

from errors import SensorChecksum, SensorRange, SensorTimeout

try:
    from micropython import const
except ImportError:

    def const(x):  # type: ignore[misc]  # CPython: const is the identity
        return x


_START_1 = const(0x42)
_START_2 = const(0x4D)
_FRAME_LEN = const(32)
_DATA_LEN = const(28)  # the frame length field: 13 data words and the checksum
_MAX_PM = const(1000)  # the datasheet's maximum range, ug/m3

_CMD_PASSIVE = b"\x42\x4d\xe1\x00\x00\x01\x70"
_CMD_READ = b"\x42\x4d\xe2\x00\x00\x01\x71"

# Nothing within 1.5 s is a dead sensor; 9600 baud carries ~1 byte/ms, so a frame's worth of
# noise per poll is plenty, and more than 4 frames of noise in a row is a broken line.
_POLL_S = 0.01
_MAX_POLLS = const(150)
_MAX_SKIPPED = const(128)


class PMS5003:
    name = "pms5003"

    def __init__(self, uart):
        self._uart = uart
        self._frame = bytearray(_FRAME_LEN)
        self._summed = memoryview(self._frame)[:30]
        self._passive = False

    def _drain(self):
        n = self._uart.any()
        while n:
            self._uart.read(n)
            n = self._uart.any()

    async def _collect(self):
        # Fill self._frame with one frame, resynchronising on 42 4D. Reads never go past the
        # end of the frame being assembled, so nothing after it is consumed.
        f = self._frame
        n = 0
        skipped = 0
        for _ in range(_MAX_POLLS):
            avail = self._uart.any()
            if not avail:
                await asyncio.sleep(_POLL_S)
                continue
            chunk = self._uart.read(min(avail, _FRAME_LEN - n)) or b""
            for b in chunk:
                if n == 0:
                    if b == _START_1:
                        n = 1
                    else:
                        skipped += 1
                elif n == 1:
                    if b == _START_2:
                        n = 2
                    elif b != _START_1:
                        n = 0
                        skipped += 2
                else:
                    f[n] = b
                    n += 1
                    if n == 4 and (f[2] << 8 | f[3]) != _DATA_LEN:
                        # Not a data frame (e.g. a command acknowledgement): look again.
                        n = 0
                        skipped += 4
                if skipped > _MAX_SKIPPED:
                    raise SensorChecksum("pms5003: no frame start in %d bytes" % skipped)
            if n == _FRAME_LEN:
                f[0] = _START_1
                f[1] = _START_2
                return
        raise SensorTimeout("pms5003: no frame within %d ms" % int(_MAX_POLLS * _POLL_S * 1000))

    async def read(self):
        if not self._passive:
            self._uart.write(_CMD_PASSIVE)
            self._passive = True
            await asyncio.sleep(0.1)  # let the acknowledgement and any active frame arrive
        self._drain()
        self._uart.write(_CMD_READ)
        try:
            await self._collect()
        except SensorTimeout:
            self._passive = False  # it may have restarted in active mode: ask again next time
            raise
        words = struct.unpack(">HHHHHHHHHHHHHHHH", self._frame)
        total = sum(self._summed) & 0xFFFF
        if total != words[15]:
            raise SensorChecksum(
                "pms5003: checksum 0x%04x, frame sums to 0x%04x" % (words[15], total)
            )
        pm1, pm2_5, pm10 = words[5], words[6], words[7]
        if pm1 > _MAX_PM or pm2_5 > _MAX_PM or pm10 > _MAX_PM:
            raise SensorRange("pms5003: %d/%d/%d ug/m3 beyond %d" % (pm1, pm2_5, pm10, _MAX_PM))
        return [("pm1", "ug/m3", pm1), ("pm2_5", "ug/m3", pm2_5), ("pm10", "ug/m3", pm10)]
