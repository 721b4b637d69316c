"""The PMS5003 particulate sensor on a UART, as the firmware's ``pms5003.py`` meets it.

Its 32-byte frames, active (streaming) and passive (on request) modes, and its 7-byte commands.
``Pms5003Model(source, clock=...)`` takes a callable giving (PM1, PM2.5, PM10) in ug/m3 at
the board's time; put it behind an ``hw.machine.UART``::

    uart = UART(1, 9600, device=Pms5003Model(lambda: (9, 14, 22), clock=time.time))
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from typing import Final

from hw.machine import UARTDevice

_PMS_START: Final = b"\x42\x4d"
_PMS_CMD_MODE: Final = 0xE1
_PMS_CMD_READ: Final = 0xE2
_PMS_CMD_SLEEP: Final = 0xE4
_PMS_VERSION: Final = 0x97


def pms5003_frame(pm1: int, pm2_5: int, pm10: int, *, corrupt: bool = False) -> bytes:
    """A 32-byte PMS5003 data frame for these atmospheric concentrations (ug/m3).

    The CF=1 ("standard particle") values equal the atmospheric ones at low concentrations
    and run higher above about 30 ug/m3, as on the sensor; the particle counts per 0.1 L
    follow from the masses. ``corrupt`` makes the checksum wrong.
    """

    def cf1(x: int) -> int:
        return x if x < 30 else round(30 + (x - 30) * 1.5)

    counts = (pm1 * 180, pm1 * 52, pm2_5 * 9, pm10 - pm2_5, max(0, (pm10 - pm2_5) // 4), 0)
    words = (cf1(pm1), cf1(pm2_5), cf1(pm10), pm1, pm2_5, pm10, *counts)
    body = _PMS_START + struct.pack(
        ">H12HBB", 28, *(min(w, 0xFFFF) for w in words), _PMS_VERSION, 0
    )
    check = (sum(body) + (1 if corrupt else 0)) & 0xFFFF
    return body + struct.pack(">H", check)


def _pms_reply(cmd: int, data: int) -> bytes:
    body = _PMS_START + struct.pack(">HBB", 4, cmd, data)
    return body + struct.pack(">H", sum(body) & 0xFFFF)


class Pms5003Model(UARTDevice):
    """A PMS5003: streams a frame every ``interval_s`` in active mode, answers reads in passive.

    ``source()`` gives (PM1, PM2.5, PM10) in ug/m3; ``clock()`` the board's time in seconds.
    Commands are the datasheet's 7-byte ``42 4D CMD DATAH DATAL LRCH LRCL``; mode and sleep
    commands are acknowledged with an 8-byte reply. Under ``"garbage"`` every frame has a bad
    checksum and comes after a few bytes of line noise.
    """

    def __init__(
        self,
        source: Callable[[], tuple[float, float, float]],
        *,
        clock: Callable[[], float],
        seed: int = 0,
        interval_s: float = 1.0,
    ) -> None:
        self.source = source
        self.clock = clock
        self.interval_s = interval_s
        self.passive = False
        self.asleep = False
        self._rng = random.Random(seed)
        self._cmd = bytearray()
        self._next_frame = clock() + interval_s

    def _frame(self) -> bytes:
        pm1, pm2_5, pm10 = (max(0, round(v)) for v in self.source())
        if self.fault == "garbage":
            noise = bytes(self._rng.getrandbits(8) for _ in range(self._rng.randrange(1, 8)))
            return noise + pms5003_frame(pm1, pm2_5, pm10, corrupt=True)
        return pms5003_frame(pm1, pm2_5, pm10)

    def on_write(self, data: bytes) -> bytes:
        self._cmd += data
        out = b""
        while len(self._cmd) >= 7:
            start = self._cmd.find(_PMS_START)
            if start < 0:
                del self._cmd[:-1]
                break
            del self._cmd[:start]
            if len(self._cmd) < 7:
                break
            cmd, _, value, lrc = struct.unpack(">BBBH", self._cmd[2:7])
            ok = sum(self._cmd[:5]) & 0xFFFF == lrc
            del self._cmd[:7]
            if ok:
                out += self._command(cmd, value)
        return out

    def _command(self, cmd: int, value: int) -> bytes:
        if cmd == _PMS_CMD_SLEEP:
            self.asleep = value == 0
            self._next_frame = self.clock() + 2.5  # it needs seconds to spin the fan up
            return _pms_reply(cmd, value)
        if self.asleep:
            return b""
        if cmd == _PMS_CMD_MODE:
            self.passive = value == 0
            self._next_frame = self.clock() + self.interval_s
            return _pms_reply(cmd, value)
        if cmd == _PMS_CMD_READ and self.passive:
            return self._frame()
        return b""

    def pending(self) -> bytes:
        if self.passive or self.asleep:
            return b""
        now = self.clock()
        out = b""
        for _ in range(8):  # a jump of the clock is not a flood of stale frames
            if now < self._next_frame:
                break
            out += self._frame()
            self._next_frame += self.interval_s
        if now >= self._next_frame:
            self._next_frame = now + self.interval_s
        return out
