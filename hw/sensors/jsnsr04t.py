"""The JSN-SR04T waterproof ultrasonic ranger in serial mode, as the firmware's ``jsnsr04t.py``
meets it: the 4-byte answer to a 0x55 trigger, or its mode-2 stream.

``JsnSr04tModel(source)`` takes a callable giving the true distance in mm; put it behind an
``hw.machine.UART``::

    uart = UART(2, 9600, device=JsnSr04tModel(lambda: 1830.0))
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final

from hw.machine import UARTDevice

_SONAR_TRIGGER: Final = 0x55
_SONAR_MAX_MM: Final = 6000


def jsnsr04t_frame(mm: int, *, corrupt: bool = False) -> bytes:
    """The 4-byte answer ``FF H L SUM`` for a distance in millimetres."""
    h, low = (mm >> 8) & 0xFF, mm & 0xFF
    return bytes((0xFF, h, low, (0xFF + h + low + (1 if corrupt else 0)) & 0xFF))


class JsnSr04tModel(UARTDevice):
    """A JSN-SR04T in serial mode: ``source()`` gives the true distance to the target in mm.

    Mode 3 answers each 0x55 trigger; mode 2 also streams a frame every 100 ms by ``clock``.
    Beyond 6 m there is no echo and the module reports 0. Under ``"garbage"`` it answers with
    frames whose sum is wrong, or with noise.
    """

    def __init__(
        self,
        source: Callable[[], float],
        *,
        clock: Callable[[], float] | None = None,
        seed: int = 0,
        mode: int = 3,
    ) -> None:
        if mode not in (2, 3):
            raise ValueError("the serial modes are 2 (streaming) and 3 (on request)")
        if mode == 2 and clock is None:
            raise ValueError("mode 2 streams by the clock: give clock=")
        self.source = source
        self.clock = clock
        self.mode = mode
        self.triggers = 0
        self._rng = random.Random(seed)
        self._next_frame = clock() + 0.1 if clock is not None else 0.0

    def _frame(self) -> bytes:
        mm = round(self.source())
        if not 0 <= mm <= _SONAR_MAX_MM:
            mm = 0
        if self.fault == "garbage":
            noise = bytes(self._rng.randrange(0xFF) for _ in range(self._rng.randrange(4)))
            return noise + jsnsr04t_frame(mm, corrupt=True)
        return jsnsr04t_frame(mm)

    def on_write(self, data: bytes) -> bytes:
        out = b""
        for b in data:
            if b == _SONAR_TRIGGER:
                self.triggers += 1
                out += self._frame()
        return out

    def pending(self) -> bytes:
        if self.mode != 2 or self.clock is None:
            return b""
        now = self.clock()
        out = b""
        for _ in range(4):
            if now < self._next_frame:
                break
            out += self._frame()
            self._next_frame += 0.1
        if now >= self._next_frame:
            self._next_frame = now + 0.1
        return out
