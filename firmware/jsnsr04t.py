"""JSN-SR04T waterproof ultrasonic rangefinder on a UART (serial "controlled" mode).

With the mode resistor fitted for serial output (mode 2 streams, mode 3 answers on request;
this driver works with either), writing 0x55 triggers a measurement and the module answers
four bytes: ``FF``, distance high byte, distance low byte, and ``SUM = (FF + H + L) & FF``.
The distance is in millimetres; closer than 200 mm (the blind zone) or beyond 6000 mm the
reading cannot be trusted.

The geometry turns a distance into what the node reports:

- water level: ``mount_mm`` is the height of the sensor face above the gauge datum, so
  ``level = mount - distance`` (it can go below zero when the water drops below the datum);
- waste bin: ``bin_depth_mm`` is the distance from the sensor face to the empty bin's floor
  and ``full_mm`` the distance at which the bin counts as full (at least the blind zone), so
  ``fill`` goes from 0 % (empty) to 100 % (full), clamped.

Wiring (simpul carrier board)::

    JSN-SR04T 5V -> 5V, GND -> GND, RX -> GPIO27 (ESP32 TX), TX -> GPIO26 (ESP32 RX)

Usage::

    import asyncio
    from machine import UART
    from jsnsr04t import JSNSR04T

    river = JSNSR04T(UART(2, 9600, tx=27, rx=26, timeout=0), mount_mm=4500)
    print(asyncio.run(river.read()))
    # [('distance', 'm', 3.215), ('level', 'm', 1.285)]
"""

import asyncio

from errors import SensorChecksum, SensorRange, SensorTimeout

try:
    from micropython import const
except ImportError:

    def const(x):  # type: ignore[misc]  # CPython: const is the identity
        return x


_TRIGGER = b"\x55"
_START = const(0xFF)
_FRAME_LEN = const(4)
_MIN_MM = const(200)
_MAX_MM = const(6000)

# A measurement takes up to ~100 ms (an echo from 6 m and back); give up after 500 ms.
_POLL_S = 0.01
_MAX_POLLS = const(50)
_MAX_SKIPPED = const(32)


class JSNSR04T:
    name = "jsnsr04t"

    def __init__(self, uart, mount_mm=None, bin_depth_mm=None, full_mm=250):
        if mount_mm is not None and bin_depth_mm is not None:
            raise ValueError("jsnsr04t: give mount_mm (water) or bin_depth_mm (bin), not both")
        if bin_depth_mm is not None and not _MIN_MM <= full_mm < bin_depth_mm:
            raise ValueError("jsnsr04t: need 200 <= full_mm < bin_depth_mm")
        self._uart = uart
        self._mount_mm = mount_mm
        self._bin_depth_mm = bin_depth_mm
        self._full_mm = full_mm
        self._frame = bytearray(_FRAME_LEN)

    async def _collect(self):
        f = self._frame
        n = 0
        skipped = 0
        for _ in range(_MAX_POLLS):
            avail = self._uart.any()
            if not avail:
                await asyncio.sleep(_POLL_S)
                continue
            # Never read past the frame being assembled (mode 2 keeps streaming).
            for b in self._uart.read(min(avail, _FRAME_LEN - n)) or b"":
                if n == 0 and b != _START:
                    skipped += 1
                    if skipped > _MAX_SKIPPED:
                        raise SensorChecksum("jsnsr04t: no frame start in %d bytes" % skipped)
                    continue
                f[n] = b
                n += 1
            if n == _FRAME_LEN:
                return
        raise SensorTimeout("jsnsr04t: no answer within %d ms" % int(_MAX_POLLS * _POLL_S * 1000))

    async def distance_mm(self):
        n = self._uart.any()
        while n:  # stale frames from mode 2 streaming or an earlier timeout
            self._uart.read(n)
            n = self._uart.any()
        self._uart.write(_TRIGGER)
        await self._collect()
        f = self._frame
        if (f[0] + f[1] + f[2]) & 0xFF != f[3]:
            raise SensorChecksum(
                "jsnsr04t: frame %02x %02x %02x %02x has a bad sum" % (f[0], f[1], f[2], f[3])
            )
        mm = f[1] << 8 | f[2]
        if not _MIN_MM <= mm <= _MAX_MM:
            raise SensorRange("jsnsr04t: %d mm outside 200..6000 mm" % mm)
        return mm

    async def read(self):
        mm = await self.distance_mm()
        out = [("distance", "m", round(mm / 1000, 3))]
        if self._mount_mm is not None:
            out.append(("level", "m", round((self._mount_mm - mm) / 1000, 3)))
        elif self._bin_depth_mm is not None:
            fill = (self._bin_depth_mm - mm) * 100 / (self._bin_depth_mm - self._full_mm)
            out.append(("fill", "%", round(min(100, max(0, fill)), 1)))
        return out
