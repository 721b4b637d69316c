"""A board's USB serial port on a pseudo-terminal, speaking MicroPython's REPL protocol.

``SerialPort`` is the pty: the board holds the master end, and the slave's path
(``/dev/pts/N``) is what a technician's tool opens, pyserial's ``serial_for_url`` and
``mpremote connect`` included. ``Repl`` is the protocol of ``shared/runtime/pyexec.c`` as a
board runs it, over a ``ReplTarget`` (the emulated board: either engine):

- while the firmware runs, its console lines go out and only Ctrl-C is heard: it interrupts
  the firmware and drops to the friendly REPL (banner, ``>>> ``);
- friendly REPL: line editing with echo, ``... `` continuation, Ctrl-C (cancel line), Ctrl-D
  (soft reboot, the firmware starts again), Ctrl-E (paste mode), Ctrl-B (banner), Ctrl-A
  (raw REPL);
- raw REPL: ``raw REPL; CTRL-B to exit\\r\\n>``; code, then Ctrl-D → ``OK``, output,
  ``\\x04``, error, ``\\x04``, ``>``; Ctrl-D alone soft-reboots and stays in the raw REPL;
  ``\\x05A\\x01`` enters raw-paste mode (``R\\x01``, a window of 128 bytes as u16 LE, ``\\x01``
  for every window consumed, ``\\x04`` ends the code and is acknowledged); Ctrl-B goes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections import deque
from collections.abc import Callable
from typing import Protocol

from hw.engines.micropython import reset_cause

CTRL_A, CTRL_B, CTRL_C, CTRL_D, CTRL_E = 1, 2, 3, 4, 5
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
SOFT_REBOOT = b"MPY: soft reboot\r\n"
RAW_PASTE_WINDOW = 128  # half of MicroPython's 256-byte stdin buffer, as pyexec.c offers
_LOG_BACKLOG = 16 * 1024  # console bytes kept for a reader that is not reading


class BoardGone(Exception):
    """The board reset or lost power while REPL code ran: no answer will come."""


class ReplTarget(Protocol):
    """What the REPL needs from an emulated board."""

    async def interrupt(self) -> bool:
        """Stop the firmware if it runs (Ctrl-C); True if it was running."""
        ...

    async def soft_reboot(self, run_main: bool) -> None:
        """Restart the board's software; return once it has booted again."""
        ...

    async def execute(self, source: str, single: bool, out: Callable[[bytes], None]) -> str:
        """Run REPL code, its output to ``out``; return the error text ('' if none).

        ``single`` is the friendly REPL's mode: an expression's value is printed. Raises
        :class:`BoardGone` when the code reset the board.
        """
        ...

    def interrupt_execution(self) -> None:
        """Ctrl-C while REPL code runs."""
        ...

    def ignores_ctrl_c(self) -> bool:
        """Whether the running program has disabled Ctrl-C (``micropython.kbd_intr(-1)``)."""
        ...


class ReplPort(Protocol):
    """The board's end of its serial line as the REPL uses it (``SerialPort``, ``hw.uart.Uart``)."""

    def open(self, on_input: Callable[[bytes], None]) -> None: ...

    def write(self, data: bytes, *, droppable: bool = False) -> None: ...

    def close(self) -> None: ...


class SerialPort:
    """A pseudo-terminal standing in for the board's USB serial port."""

    def __init__(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # a UART: no echo, no line discipline, bytes as they come
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self._pending = bytearray()
        self._writing = False
        self._on_input: Callable[[bytes], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self, on_input: Callable[[bytes], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._on_input = on_input
        self._loop.add_reader(self._master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        if data and self._on_input is not None:
            self._on_input(data)

    def write(self, data: bytes, *, droppable: bool = False) -> None:
        """Send bytes to whoever has the port open; console chatter may be dropped."""
        if droppable and len(self._pending) > _LOG_BACKLOG:
            return  # nobody reads: a UART's bytes are lost, not queued forever
        self._pending += data
        self._flush()

    def _flush(self) -> None:
        while self._pending:
            try:
                n = os.write(self._master, self._pending)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._pending.clear()
                break
            del self._pending[:n]
        if self._loop is None:
            return
        if self._pending and not self._writing:
            self._loop.add_writer(self._master, self._flush)
            self._writing = True
        elif not self._pending and self._writing:
            self._loop.remove_writer(self._master)
            self._writing = False

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._master)
            if self._writing:
                self._loop.remove_writer(self._master)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def cooked(text: bytes) -> bytes:
    """What a board's stdout sends for ``text``: every newline as CR LF."""
    return text.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def continues(source: str) -> bool:
    """Whether the friendly REPL wants another line (after ``mp_repl_continue_with_input``)."""
    if not source:
        return False
    depth = 0
    quote: str | None = None
    last = ""  # the last character of code outside comments
    i = 0
    while i < len(source):
        triple = source[i : i + 3]
        if triple in ('"""', "'''") and quote in (None, triple):
            quote = None if quote == triple else triple
            last = triple[0]
            i += 3
            continue
        c = source[i]
        if quote is not None:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c == "#":
            while i < len(source) and source[i] != "\n":
                i += 1
            continue
        elif c in "'\"":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if not c.isspace():
            last = c
        i += 1
    if quote in ('"""', "'''") or depth > 0 or source.endswith("\\") or last == ":":
        return True
    # Inside a compound statement, an empty line ends it.
    lines = source.split("\n")
    return len(lines) > 1 and lines[-1].strip() != ""


class Repl:
    """MicroPython's REPL on a serial port, for one board (it outlives the board's resets)."""

    def __init__(self, port: ReplPort, target: ReplTarget, banner: str) -> None:
        self.port = port
        self._target = target
        self._banner = banner.encode() + b'\r\nType "help()" for more information.\r\n'
        self.mode = "running"  # running | friendly | raw
        self._input: deque[int] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._line = bytearray()
        self._cont = ""

    def start(self) -> None:
        self.port.open(self._received)
        self._task = asyncio.ensure_future(self._serve())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.port.close()

    # --- what the board tells the REPL ------------------------------------------------------

    def console(self, text: bytes) -> None:
        """The firmware printed ``text``."""
        if self.mode == "running":
            self.port.write(cooked(text), droppable=True)

    def board_booted(self, cause: str, running: bool, *, rom_line: bool = True) -> None:
        """The board (re)booted; ``running``: its firmware runs, not the REPL; ``rom_line``:
        print the ROM's first line (unless the chip's ROM emulation printed it)."""
        if cause != "soft":
            self._input.clear()  # what was on its way to a chip in reset is lost
        if cause != "soft" and rom_line:
            self.port.write(_rom_boot_line(cause), droppable=True)
        if running:
            self.mode = "running"
            self._line.clear()
            self._cont = ""

    def firmware_ended(self) -> None:
        """The firmware returned (as main.py ending): a board starts its friendly REPL."""
        if self.mode == "running":
            self._enter_friendly()

    # --- input --------------------------------------------------------------------------

    def _received(self, data: bytes) -> None:
        self._input.extend(data)
        self._arrived.set()

    async def _next(self) -> int:
        while not self._input:
            self._arrived.clear()
            await self._arrived.wait()
        return self._input.popleft()

    async def _serve(self) -> None:
        while True:
            c = await self._next()
            if self.mode == "running":
                if c == CTRL_C and not self._target.ignores_ctrl_c():
                    await self._interrupt_firmware()
            elif self.mode == "raw":
                await self._raw_char(c)
            else:
                await self._friendly_char(c)

    async def _interrupt_firmware(self) -> None:
        if await self._target.interrupt():
            self.port.write(
                b"Traceback (most recent call last):\r\n"
                b'  File "main.py", line 8, in <module>\r\n'
                b"KeyboardInterrupt: \r\n"
            )
        self._enter_friendly()

    def _enter_friendly(self) -> None:
        self.mode = "friendly"
        self._line.clear()
        self._cont = ""
        self.port.write(self._banner + b">>> ")

    # --- friendly REPL ------------------------------------------------------------------

    async def _friendly_char(self, c: int) -> None:
        w = self.port.write
        if c == CTRL_A:
            self.mode = "raw"
            self._line.clear()
            w(b"\r\n" + RAW_BANNER + b">")
        elif c == CTRL_B:
            w(b"\r\n")
            self._enter_friendly()
        elif c == CTRL_C:
            w(b"\r\n>>> ")
            self._line.clear()
            self._cont = ""
        elif c == CTRL_D:
            if self._cont:
                await self._run_friendly(self._cont)
            elif not self._line:
                w(b"\r\n" + SOFT_REBOOT)
                await self._target.soft_reboot(run_main=True)
        elif c == CTRL_E:
            await self._paste_mode()
        elif c in (8, 127):
            if self._line:
                self._line.pop()
                w(b"\x08 \x08")
        elif c == 27:
            # An escape sequence (arrow keys): no history here, swallow it.
            if await self._next() == ord("["):
                while not 64 <= await self._next() <= 126:
                    pass
        elif c in (13, 10):
            w(b"\r\n")
            line = self._line.decode(errors="replace")
            self._line.clear()
            source = self._cont + line
            if not source.strip() and not self._cont:
                w(b">>> ")
            elif continues(source):
                self._cont = source + "\n"
                w(b"... ")
            else:
                await self._run_friendly(source)
        elif c >= 32 or c == 9:
            self._line.append(c)
            w(bytes((c,)))

    async def _run_friendly(self, source: str) -> None:
        self._cont = ""
        single = "\n" not in source.strip() and not source.lstrip().startswith(("@",))
        error = await self._execute(source, single)
        if error is None:
            return
        self.port.write(cooked(error.encode()) + b">>> ")

    async def _paste_mode(self) -> None:
        w = self.port.write
        w(b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ")
        text = bytearray()
        while True:
            c = await self._next()
            if c == CTRL_C:
                w(b"\r\n>>> ")
                return
            if c == CTRL_D:
                w(b"\r\n")
                break
            text.append(c)
            w(b"\r\n=== " if c == 13 else bytes((c,)))
        error = await self._execute(text.decode(errors="replace").replace("\r", "\n"), False)
        if error is not None:
            w(cooked(error.encode()) + b">>> ")

    # --- raw REPL -----------------------------------------------------------------------

    async def _raw_char(self, c: int) -> None:
        w = self.port.write
        line = self._line
        if c == CTRL_A:
            if len(line) == 2 and line[0] == CTRL_E:
                command = line[1]
                line.clear()
                await self._raw_paste(command)
                return
            line.clear()
            w(RAW_BANNER + b">")
        elif c == CTRL_B:
            line.clear()
            w(b"\r\n")
            self._enter_friendly()
        elif c == CTRL_C:
            line.clear()
        elif c == CTRL_D:
            w(b"OK")
            if not line:
                w(b"\r\n" + SOFT_REBOOT)
                await self._target.soft_reboot(run_main=False)
                w(RAW_BANNER + b">")
                return
            source = line.decode(errors="replace")
            line.clear()
            await self._run_raw(source)
        else:
            line.append(c)

    async def _raw_paste(self, command: int) -> None:
        w = self.port.write
        if command != ord("A"):
            w(b"R\x00")
            w(b">")
            return
        w(b"R\x01" + RAW_PASTE_WINDOW.to_bytes(2, "little") + b"\x01")
        code = bytearray()
        remain = RAW_PASTE_WINDOW
        while True:
            c = await self._next()
            if c in (CTRL_C, CTRL_D):
                w(b"\x04")  # end of data, acknowledged
                if c == CTRL_C:
                    w(b"\x04KeyboardInterrupt: \r\n\x04>")
                    return
                break
            code.append(c)
            remain -= 1
            if remain == 0:
                w(b"\x01")  # another window may come
                remain = RAW_PASTE_WINDOW
        await self._run_raw(code.decode(errors="replace"), announce=False)

    async def _run_raw(self, source: str, *, announce: bool = True) -> None:
        error = await self._execute(source, False)
        if error is None:
            return
        self.port.write(b"\x04" + cooked(error.encode()) + b"\x04>")

    # --- running code -------------------------------------------------------------------

    async def _execute(self, source: str, single: bool) -> str | None:
        """Run code while still hearing Ctrl-C; None if the board went away meanwhile."""

        def out(data: bytes) -> None:
            self.port.write(cooked(data))

        run = asyncio.ensure_future(self._target.execute(source, single, out))
        held: list[int] = []
        try:
            while not run.done():
                key = asyncio.ensure_future(self._next())
                await asyncio.wait({run, key}, return_when=asyncio.FIRST_COMPLETED)
                if key.done():
                    c = key.result()
                    if c == CTRL_C:
                        self._target.interrupt_execution()
                    else:
                        held.append(c)  # typed ahead: read after the code finishes
                else:
                    key.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await key
        finally:
            self._input.extendleft(reversed(held))
        try:
            return run.result()
        except BoardGone:
            return None


def _rom_boot_line(cause: str) -> bytes:
    """What the ESP32's ROM bootloader prints first after a reset."""
    rst = reset_cause(cause).rom
    return b"ets Jul 29 2019 12:21:46\r\n\r\nrst:" + rst + b",boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"
