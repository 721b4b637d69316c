"""The emulated ESP32 that the CPython engine hands the unchanged firmware.

It offers exactly the interface of ``firmware/board.py`` (read its docstring): buses with the
sensor models behind them, the flash directory, a UDP link through the host, the clocks, the
watchdog and resets. Each board keeps its own state, so hundreds share one process.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hw.flash import Flash, FlashFaults
from hw.link import LinkFaults, UdpLink

TICKS_PERIOD = 1 << 30  # MicroPython's ticks wrap here


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


class EmulatedBoard:
    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        flash: Flash,
        buses: Mapping[str, Any],
        faults: Faults,
        console: Console,
        reset_cause: str,
        rssi_dbm: int,
        on_log: Callable[[str], None] | None = None,
    ) -> None:
        self.config = dict(config)
        self.flash = flash
        self._buses = buses
        self.faults = faults
        self._console = console
        self._reset_cause = reset_cause
        self._rssi = rssi_dbm
        self._rng = random.Random(rssi_dbm)
        self._links: list[UdpLink] = []
        self._on_log = on_log
        self.watchdog_fed = time.monotonic()

    def bus(self, name: str) -> Any:
        try:
            return self._buses[name]
        except KeyError:
            raise ValueError(f"no bus {name} on this board") from None

    def udp(self, host: str, port: int) -> UdpLink:
        link = UdpLink(host, port, self.faults.link)
        self._links.append(link)
        return link

    def ticks_ms(self) -> int:
        return int(time.monotonic() * 1000) % TICKS_PERIOD

    def ticks_diff(self, a: int, b: int) -> int:
        half = TICKS_PERIOD // 2
        return ((a - b + half) % TICKS_PERIOD) - half

    def time_ms(self) -> int:
        return wall_clock_ms(self.faults)

    async def sleep_ms(self, ms: int) -> None:
        await asyncio.sleep(ms / 1000)

    def feed_watchdog(self) -> None:
        self.watchdog_fed = time.monotonic()

    def reset_cause(self) -> str:
        return self._reset_cause

    def reset(self) -> None:
        raise BoardReset("soft")

    def deepsleep(self, ms: int) -> None:
        raise BoardReset("deepsleep", ms)

    def mem(self) -> tuple[int, int] | None:
        # The CPython engine cannot see one board's heap; the MicroPython VM engine can.
        return None

    def rssi(self) -> int | None:
        if self.faults.link.down:
            return None
        return self._rssi + self._rng.randint(-3, 3)

    def urandom(self, n: int) -> bytes:
        return os.urandom(n)

    def log(self, line: str) -> None:
        self._console.write_line(line)
        if self._on_log is not None:
            self._on_log(line)

    def close(self) -> None:
        for link in self._links:
            link.close()
        self._links.clear()
