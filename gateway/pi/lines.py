"""A wired board's EN and IO0 lines, driven from two of the Pi's GPIOs.

The ESP32 leaves reset when EN rises and, about then, samples IO0: high, it boots the
flash (MicroPython); low, its ROM serial bootloader waits for esptool. So:

* :meth:`BoardLines.reset`: EN low for ``pulse_s`` (0.1 s), then released, IO0 left high:
  the board restarts as at power-on (its reset cause: power-on);
* :meth:`BoardLines.bootloader`: IO0 held low, EN low for ``pulse_s`` and released, IO0
  held ``strap_s`` longer so the chip samples it low, then released: the ROM bootloader.

Each line is a gpiozero :class:`~gpiozero.DigitalOutputDevice` whose *active* value is
"pulled low"; released, the GPIO holds the line high. With ``inverted`` wiring (an NPN
transistor per line, as in a USB bridge's auto-reset circuit) the GPIO goes high to pull
the line low.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from gpiozero import DigitalOutputDevice

from gateway.config import WiredBoardConfig

#: Seconds IO0 stays low after EN rose: the strap is sampled after the EN line's RC delay
#: (about 0.1 s on a board with a 10 uF capacitor), so hold it well past that.
STRAP_HOLD_S: Final = 0.3


class BoardLines:
    """One board's EN and IO0."""

    def __init__(
        self,
        en: int,
        io0: int,
        *,
        inverted: bool = False,
        pulse_s: float = 0.1,
        strap_s: float = STRAP_HOLD_S,
        pin_factory: Any,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # active_high=False: active (pulled low) is the GPIO low; inverted wiring flips it.
        self.en = DigitalOutputDevice(
            en, active_high=inverted, initial_value=False, pin_factory=pin_factory
        )
        self.io0 = DigitalOutputDevice(
            io0, active_high=inverted, initial_value=False, pin_factory=pin_factory
        )
        self.pulse_s = pulse_s
        self.strap_s = strap_s
        self._sleep = sleep
        self._lock = threading.Lock()  # one sequence at a time on a board

    def reset(self) -> dict[str, Any]:
        """EN low ``pulse_s``, released; IO0 high throughout. What was done."""
        with self._lock:
            self.io0.off()
            self.en.on()
            self._sleep(self.pulse_s)
            self.en.off()
        return {"en_low_ms": round(self.pulse_s * 1000), "io0": "high"}

    def bootloader(self) -> dict[str, Any]:
        """IO0 low, EN pulsed low, IO0 released ``strap_s`` after EN rose. What was done."""
        with self._lock:
            self.io0.on()
            self.en.on()
            self._sleep(self.pulse_s)
            self.en.off()
            self._sleep(self.strap_s)
            self.io0.off()
        return {
            "en_low_ms": round(self.pulse_s * 1000),
            "io0": "low",
            "io0_held_after_en_ms": round(self.strap_s * 1000),
        }

    def close(self) -> None:
        self.en.close()
        self.io0.close()


class WiredBoards:
    """Every wired board's lines, by board id (``gateway.pi.boards``)."""

    def __init__(
        self,
        boards: Mapping[str, WiredBoardConfig],
        *,
        pulse_s: float,
        pin_factory: Any,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.lines = {
            board: BoardLines(
                wiring.en,
                wiring.io0,
                inverted=wiring.inverted,
                pulse_s=pulse_s,
                pin_factory=pin_factory,
                sleep=sleep,
            )
            for board, wiring in sorted(boards.items())
        }

    def run(self, action: str, board: str) -> dict[str, Any]:
        """``power_cycle`` or ``bootloader`` on ``board``; what was done. :class:`KeyError`
        for a board with no lines, :class:`ValueError` for another action."""
        lines = self.lines.get(board)
        if lines is None:
            raise KeyError(board)
        if action == "power_cycle":
            done = lines.reset()
        elif action == "bootloader":
            done = lines.bootloader()
        else:
            raise ValueError(f"no line sequence for {action!r}")
        return {"board": board, "action": action, **done}

    def close(self) -> None:
        for lines in self.lines.values():
            lines.close()


__all__ = ["STRAP_HOLD_S", "BoardLines", "WiredBoards"]
