"""The emulated ESP32 that the CPython engine hands the unchanged firmware.

It honours the board contract (``hw/contract.py``, which ``firmware/board.py`` honours on the
chip): buses with the sensor models behind them, the flash directory, a UDP link through the
host, the clocks, the watchdog and resets, heap and radio figures. Each board keeps its own
state, so hundreds share one process.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from hw.engines.chip import BoardReset, Faults, wall_clock_ms
from hw.engines.micropython import FIRMWARE_HEAP_TYPICAL, Ticks, heap
from hw.flash import Flash
from hw.link import Radio, UdpLink


class EmulatedBoard:
    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        flash: Flash,
        buses: Mapping[str, Any],
        faults: Faults,
        reset_cause: str,
        radio: Radio,
        ticks: Ticks,
        log: Callable[[str], None],
    ) -> None:
        self.config = dict(config)
        self.flash = flash
        self._buses = buses
        self.faults = faults
        self._reset_cause = reset_cause
        self._radio = radio
        self._ticks = ticks
        self._log = log
        self._links: list[UdpLink] = []
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
        return self._ticks.ticks_ms()

    def ticks_diff(self, a: int, b: int) -> int:
        return self._ticks.ticks_diff(a, b)

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

    def mem(self) -> tuple[int, int]:
        return heap(FIRMWARE_HEAP_TYPICAL)

    def rssi(self) -> int | None:
        return self._radio.rssi()

    def urandom(self, n: int) -> bytes:
        return os.urandom(n)

    def log(self, line: str) -> None:
        self._log(line)

    def close(self) -> None:
        for link in self._links:
            link.close()
        self._links.clear()
