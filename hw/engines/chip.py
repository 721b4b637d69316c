"""What every emulated ESP32 has, whichever engine runs its firmware: the faults it can be
given, its real-time clock, its serial console, and the way it restarts."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hw.flash import FlashFaults
from hw.link import LinkFaults
from hw.uart import SerialFaults


class BoardReset(BaseException):
    """The firmware called ``reset()`` or ``deepsleep()``: the chip restarts."""

    def __init__(self, cause: str, after_ms: int = 0) -> None:
        super().__init__(cause)
        self.cause = cause
        self.after_ms = after_ms


@dataclass
class Faults:
    """Every fault an emulated board can be given, changeable while it runs."""

    flash: FlashFaults = field(default_factory=FlashFaults)
    link: LinkFaults = field(default_factory=LinkFaults)
    serial: SerialFaults = field(default_factory=SerialFaults)  # the USB serial line's
    clock_drift_ppm: float = 0.0  # the RTC runs fast (+) or slow (-)
    clock_offset_ms: int = 0  # the RTC was set wrong by this much


def wall_clock_ms(faults: Faults) -> int:
    """The board's RTC in Unix milliseconds: the host's clock, with the board's drift and offset."""
    now = time.time() * 1000
    return int(now * (1 + faults.clock_drift_ppm / 1e6)) + faults.clock_offset_ms


class Console:
    """The board's serial console: lines go to a file that outlives the process."""

    def __init__(self, path: os.PathLike[str] | str, echo: Callable[[str], None] | None) -> None:
        self._file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        self._echo = echo

    def write_line(self, line: str) -> None:
        self._file.write(line + "\n")
        if self._echo is not None:
            self._echo(line)

    def close(self) -> None:
        self._file.close()
