"""An emulated board's UART0 behind its USB serial bridge: a pty and, on request, an RFC 2217
port, the line's faults, and the bridge's DTR/RTS wired to EN and IO0.

What the board sends goes out of every port; what either port receives goes, through the
faults, to whoever listens on the board side: MicroPython's REPL (``hw/serial_repl.py``) or,
in download mode, the ROM bootloader (``hw/esp32_chip.py``).

A pty has no modem lines, so the RFC 2217 port (``rfc2217://127.0.0.1:PORT``, served with
pyserial's own ``serial.rfc2217.PortManager``) is where a tool drives DTR and RTS, and they
reach the chip as through an ESP32 dev board's auto-reset circuit (two transistors):
DTR=1, RTS=0 pulls IO0 low; DTR=0, RTS=1 pulls EN low (reset); equal lines leave both
high. One client at a time: a second connection is closed at once, as a busy port refuses.

The line's faults (:class:`SerialFaults`), changeable while the board runs, act on the bytes
the board receives, from either port:

- ``drop_every = N``: every Nth byte is lost (an overrun UART FIFO);
- ``corrupt_every = N``: every Nth byte arrives with its bits inverted (noise on the line);
- ``drop_after = N``: after N bytes every further byte is lost (a bridge that gives up);
- ``ignores_ctrl_c``: the program on the board has disabled Ctrl-C
  (``micropython.kbd_intr(-1)``), so it cannot be interrupted and the raw REPL cannot be
  entered; only a reset into download mode (hold BOOT, press EN) gets past it.

``received`` counts the bytes that reached the line, before the faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass

import serial
import serial.rfc2217

from hw.serial_repl import SerialPort


@dataclass
class SerialFaults:
    drop_every: int | None = None
    corrupt_every: int | None = None
    drop_after: int | None = None
    ignores_ctrl_c: bool = False
    received: int = 0

    def apply(self, data: bytes) -> bytes:
        """What of ``data`` the board's UART gets."""
        if self.drop_every is None and self.corrupt_every is None and self.drop_after is None:
            self.received += len(data)
            return data
        out = bytearray()
        for b in data:
            self.received += 1
            n = self.received
            if self.drop_after is not None and n > self.drop_after:
                continue
            if self.drop_every is not None and n % self.drop_every == 0:
                continue
            if self.corrupt_every is not None and n % self.corrupt_every == 0:
                b ^= 0xFF
            out.append(b)
        return bytes(out)


def auto_reset(dtr: bool, rts: bool) -> tuple[bool, bool]:
    """(EN, IO0) levels (True: high) that an ESP32 dev board's auto-reset transistors give."""
    return not (rts and not dtr), not (dtr and not rts)


class Uart:
    """The board's serial line: a pty always, an RFC 2217 port when asked for."""

    def __init__(
        self,
        faults: SerialFaults,
        *,
        rfc2217: bool = False,
        on_pins: Callable[[bool, bool], None] | None = None,
    ) -> None:
        self.faults = faults
        self.pty = SerialPort()
        self.path = self.pty.path
        self._listener: Callable[[bytes], None] | None = None
        self.rfc2217 = Rfc2217Port(self._from_host, on_pins) if rfc2217 else None

    @property
    def rfc2217_url(self) -> str | None:
        return self.rfc2217.url if self.rfc2217 else None

    def open(self, on_input: Callable[[bytes], None]) -> None:
        """Start the ports, ``on_input`` hearing what arrives (the REPL)."""
        self._listener = on_input
        self.pty.open(self._from_host)
        if self.rfc2217 is not None:
            self.rfc2217.start()

    def listen(self, on_input: Callable[[bytes], None] | None) -> Callable[[bytes], None] | None:
        """Hand what arrives to ``on_input`` from now on; return who heard it before."""
        before, self._listener = self._listener, on_input
        return before

    def _from_host(self, data: bytes) -> None:
        data = self.faults.apply(data)
        if data and self._listener is not None:
            self._listener(data)

    def write(self, data: bytes, *, droppable: bool = False) -> None:
        self.pty.write(data, droppable=droppable)
        if self.rfc2217 is not None:
            self.rfc2217.write(data)

    def close(self) -> None:
        self.pty.close()
        if self.rfc2217 is not None:
            self.rfc2217.close()


class BoardEnd:
    """The serial-like object ``PortManager`` drives: the bridge's settings and modem lines.

    Setting ``dtr``/``rts`` first hands over the data that came before it, so a reset lands
    between the bytes it was sent between.
    """

    def __init__(
        self, flush: Callable[[], None], on_lines: Callable[[bool, bool], None] | None
    ) -> None:
        self._flush = flush
        self._on_lines = on_lines
        self._dtr = False
        self._rts = False
        self.baudrate = 115200
        self.bytesize = serial.EIGHTBITS
        self.parity = serial.PARITY_NONE
        self.stopbits = serial.STOPBITS_ONE
        self.xonxoff = False
        self.rtscts = False
        self.break_condition = False
        # The bridge's inputs: nothing drives them on an ESP32 dev board.
        self.cts = self.dsr = self.ri = self.cd = False

    @property
    def dtr(self) -> bool:
        return self._dtr

    @dtr.setter
    def dtr(self, value: bool) -> None:
        self._set_lines(value, self._rts)

    @property
    def rts(self) -> bool:
        return self._rts

    @rts.setter
    def rts(self, value: bool) -> None:
        self._set_lines(self._dtr, value)

    def _set_lines(self, dtr: bool, rts: bool) -> None:
        self._flush()
        self._dtr, self._rts = dtr, rts
        if self._on_lines is not None:
            self._on_lines(*auto_reset(dtr, rts))

    def reset_input_buffer(self) -> None:
        """Nothing waits in the board's receive FIFO: bytes are handed over as they come."""

    def reset_output_buffer(self) -> None:
        """Nor in its transmit FIFO."""


class Rfc2217Port:
    """The board's serial port as an RFC 2217 server on 127.0.0.1 (one client at a time)."""

    def __init__(
        self, to_board: Callable[[bytes], None], on_pins: Callable[[bool, bool], None] | None
    ) -> None:
        self._to_board = to_board
        self._on_pins = on_pins
        # Bound now, so the URL is known before the board starts.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"rfc2217://127.0.0.1:{self.port}"
        self._server: asyncio.Server | None = None
        self._transport: asyncio.Transport | None = None
        self._manager: serial.rfc2217.PortManager | None = None
        self._pending = bytearray()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._starting = asyncio.ensure_future(
            loop.create_server(lambda: _Connection(self), sock=self._socket)
        )
        self._starting.add_done_callback(self._started)

    def _started(self, task: asyncio.Future[asyncio.Server]) -> None:
        if not task.cancelled() and task.exception() is None:
            self._server = task.result()

    def _connected(self, transport: asyncio.Transport) -> bool:
        if self._transport is not None:
            return False
        sock = transport.get_extra_info("socket")
        if sock is not None:  # each answer (SET_CONTROL's included) goes out at once
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._transport = transport
        self._manager = serial.rfc2217.PortManager(
            BoardEnd(self._flush, self._on_pins), _TransportWriter(transport)
        )
        return True

    def _received(self, data: bytes) -> None:
        if self._manager is None:
            return
        for byte in self._manager.filter(data):
            self._pending += byte
        self._flush()

    def _flush(self) -> None:
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            self._to_board(data)

    def _disconnected(self, transport: asyncio.Transport) -> None:
        if transport is self._transport:
            self._transport = None
            self._manager = None
            self._pending.clear()

    def write(self, data: bytes) -> None:
        if self._transport is not None and self._manager is not None:
            self._transport.write(b"".join(self._manager.escape(data)))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()
        if self._server is not None:
            self._server.close()
        elif hasattr(self, "_starting"):
            self._starting.cancel()
        with contextlib.suppress(OSError):
            self._socket.close()


class _TransportWriter:
    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        self._transport.write(data)


class _Connection(asyncio.Protocol):
    def __init__(self, port: Rfc2217Port) -> None:
        self._port = port
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if not self._port._connected(transport):
            transport.close()  # the port is busy
            self._transport = None

    def data_received(self, data: bytes) -> None:
        if self._transport is not None:
            self._port._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._port._disconnected(self._transport)
