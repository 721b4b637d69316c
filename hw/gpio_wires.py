"""Wires from a Raspberry Pi's GPIO header to emulated boards' EN and IO0.

Two ends, one small local channel (TCP on loopback), so that the gateway's GPIO and the
emulated boards may live in different processes, as a Pi and its boards are different
machines:

* the Pi's end, :class:`WiredPinFactory`: gpiozero's MockFactory whose pins send every
  level they take (``"<gpio> <0|1>\\n"``). ``simpul gateway run`` uses it with
  ``[gateway.pi] pin_factory = "emulated:HOST:PORT"``; the gateway code above it is the
  same that drives lgpio on a Pi;
* the boards' end, :class:`GpioWires`: which GPIO is wired to which board's line (and
  whether through an inverting transistor), serving the channel and putting each level on
  the emulated chip (:meth:`hw.esp32_chip.Esp32Chip.set_pins`), whose ROM then resets,
  samples IO0 and boots the flash or waits in its serial bootloader, as a real ESP32 does.

Levels travel in order and at once, so a 100 ms EN pulse reaches the chip as one (give or
take the scheduler). Nothing but levels crosses: the board knows nothing of the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from dataclasses import dataclass
from typing import Any, Final

from gpiozero.pins.mock import MockFactory, MockPin

from hw.esp32_chip import Esp32Chip

log = logging.getLogger(__name__)

LINES: Final = ("en", "io0")


class WiredPin(MockPin):  # type: ignore[misc]
    """A mock pin whose every level change goes down its wire."""

    def _change_state(self, value: bool) -> bool:
        changed: bool = super()._change_state(value)
        if changed:
            self.factory.send(int(self.info.name[4:]), bool(value))
        return changed


class WiredPinFactory(MockFactory):  # type: ignore[misc]
    """The Pi's end: mock pins whose levels go to ``address`` (a :class:`GpioWires`)."""

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(pin_class=WiredPin)
        self.address = address
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def send(self, gpio: int, level: bool) -> None:
        line = f"{gpio} {int(level)}\n".encode()
        with self._lock:
            for _ in range(2):  # once more on a fresh connection if the old one broke
                try:
                    if self._sock is None:
                        self._sock = socket.create_connection(self.address, timeout=5)
                        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self._sock.sendall(line)
                    return
                except OSError as exc:
                    if self._sock is not None:
                        self._sock.close()
                    self._sock = None
                    error = exc
            log.warning("GPIO %d: the wires at %s are unreachable: %s", gpio, self.address, error)

    def close(self) -> None:
        super().close()
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


@dataclass(frozen=True, slots=True)
class Wire:
    chip: Esp32Chip
    line: str
    inverted: bool


class GpioWires:
    """The boards' end: GPIOs wired to chips' EN and IO0, the channel served on loopback."""

    def __init__(self) -> None:
        self.wires: dict[int, Wire] = {}
        #: Every (gpio, level) received, in order (what the Pi drove).
        self.received: list[tuple[int, bool]] = []
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[None]] = set()

    def wire(self, gpio: int, chip: Esp32Chip, line: str, *, inverted: bool = False) -> None:
        """GPIO ``gpio`` to ``chip``'s ``line`` (``en`` or ``io0``); ``inverted``: through an
        NPN transistor (GPIO high pulls the line low)."""
        if line not in LINES:
            raise ValueError(f"line must be one of {LINES}, got {line!r}")
        if gpio in self.wires:
            raise ValueError(f"GPIO {gpio} is wired already")
        self.wires[gpio] = Wire(chip, line, inverted)

    def drive(self, gpio: int, level: bool) -> None:
        """The Pi put ``level`` on ``gpio``: the wired line follows."""
        self.received.append((gpio, level))
        wire = self.wires.get(gpio)
        if wire is None:
            return  # a pin wired to nothing here (the LED, the button)
        low = level if wire.inverted else not level
        chip = wire.chip
        en, io0 = chip.en, chip.io0
        if wire.line == "en":
            en = not low
        else:
            io0 = not low
        chip.set_pins(en, io0)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Serve the channel; the (host, port) it listens on."""
        self._server = await asyncio.start_server(self._serve, host, port)
        bound: Any = self._server.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            while line := await reader.readline():
                parts = line.split()
                if len(parts) != 2 or not parts[0].isdigit() or parts[1] not in (b"0", b"1"):
                    log.warning("GPIO wires: ignored %r", line[:40])
                    continue
                self.drive(int(parts[0]), parts[1] == b"1")
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._clients):
                task.cancel()
            await asyncio.gather(*self._clients, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None


__all__ = ["GpioWires", "WiredPin", "WiredPinFactory"]
