"""A client of MicroPython's raw REPL over a serial port: what ``simpul board`` runs code with.

The protocol (``shared/runtime/pyexec.c`` on the board): Ctrl-C stops the running program and
leaves the friendly REPL; Ctrl-A enters the raw REPL (``raw REPL; CTRL-B to exit\\r\\n>``);
code then Ctrl-D runs it and answers ``OK``, its output, ``\\x04``, its error, ``\\x04``,
``>``. Where the board offers *raw-paste* (``\\x05A\\x01`` answered ``R\\x01`` and a window
size), code is sent under flow control: never more than the window the board has granted,
each ``\\x01`` granting another, so a board busy compiling never loses bytes to a full UART
buffer. A board without it gets plain raw REPL: small pieces, a pause between them.

Bytes lost on the line turn code into a syntax error, a base64 error or a wrong length
(``fleet.board.transfer`` sends a length with every piece): :class:`BytesDropped` says so,
and the caller retries with smaller pieces. A board that stops answering mid-way is
:class:`BoardLost`, one that answers but never stops its program for Ctrl-C
:class:`IgnoresCtrlC`, one that never says anything :class:`NoBoard`.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from fleet.board.errors import BoardCodeError, BoardLost, BytesDropped, IgnoresCtrlC, NoBoard

CTRL_A, CTRL_B, CTRL_C, CTRL_D = b"\x01", b"\x02", b"\x03", b"\x04"
RAW_PROMPT: Final = b"raw REPL; CTRL-B to exit\r\n>"
#: Bytes per write in plain raw REPL, with a pause after each, as an ESP32's UART buffer
#: (256 bytes) drains while the board reads them.
PLAIN_PIECE: Final = 256
PLAIN_PAUSE_S: Final = 0.01
#: What an ESP32's ROM prints first after any reset: the board restarted under us.
RESET_MARK: Final = b"\r\nrst:0x"
#: The smallest burst written at once, when bytes keep getting lost in larger ones.
MIN_WRITE: Final = 16
#: Errors on the board that mean the code arrived with bytes missing, not that it is wrong:
#: the tool's own code is known to compile and its pieces to decode.
_GARBLED: Final = ("SyntaxError", "Incorrect padding", "invalid padding", "dropped bytes")


class SerialLike(Protocol):
    """What the client needs of a port: pyserial's ``Serial`` (any ``serial_for_url``)."""

    timeout: float | None

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes, /) -> int | None: ...

    def close(self) -> None: ...


class _Silence(Exception):
    """Nothing more came within the time allowed; ``got`` is what did. ``reset``: the ROM's
    first line came instead: the board restarted under us."""

    def __init__(self, got: bytes, *, reset: bool = False) -> None:
        super().__init__("reset" if reset else "timeout")
        self.got = got
        self.reset = reset


@dataclass(frozen=True)
class BoardFacts:
    """What a board says about itself (``simpul board info``)."""

    implementation: str  # "micropython"
    version: tuple[int, ...]  # (1, 27, 0)
    mpy_abi: int | None  # sys.implementation._mpy
    platform: str  # sys.platform: "esp32"
    flash_free: int  # bytes free on the filesystem
    flash_size: int  # bytes of the filesystem
    heap_free: int
    unique_id: str  # machine.unique_id() as hex, "" if the board has none

    @property
    def version_text(self) -> str:
        return ".".join(str(v) for v in self.version)


_FACTS_CODE: Final = """\
import sys, os, gc
try:
    import machine
    _u = machine.unique_id().hex()
except Exception:
    _u = ''
_s = os.statvfs('/')
gc.collect()
print(repr((sys.implementation.name, tuple(sys.implementation.version[:3]),
 getattr(sys.implementation, '_mpy', None), sys.platform, _s[0] * _s[4], _s[0] * _s[2],
 gc.mem_free(), _u)))
"""


class RawRepl:
    """One board's raw REPL on an open port; ``name`` is the port, for messages."""

    def __init__(self, port: SerialLike, name: str) -> None:
        self.port = port
        self.name = name
        self.raw_paste: bool | None = None  # None until the board was asked
        self.max_write = PLAIN_PIECE  # bytes written at once; lowered when bytes get lost
        self._buffer = bytearray()

    # --- bytes ------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except OSError as exc:
            raise BoardLost(
                f"the board on {self.name} went away ({exc}): check the cable"
            ) from None

    def _read_some(self) -> bytes:
        try:
            # read(1) returns as soon as a byte comes (read(4096) would wait out the timeout);
            # then whatever else has arrived.
            first = bytes(self.port.read(1))
            waiting = int(getattr(self.port, "in_waiting", 0)) if first else 0
            return first + bytes(self.port.read(waiting)) if waiting else first
        except OSError as exc:  # pyserial's SerialException is an OSError too
            raise BoardLost(
                f"the board on {self.name} went away ({exc}): check the cable"
            ) from None

    def _read_waiting(self) -> bytes:
        """What has already arrived, without waiting."""
        try:
            waiting = int(getattr(self.port, "in_waiting", 0))
            return bytes(self.port.read(waiting)) if waiting else b""
        except OSError as exc:
            raise BoardLost(
                f"the board on {self.name} went away ({exc}): check the cable"
            ) from None

    def _read_until(
        self,
        marker: bytes,
        timeout: float,
        consume: Callable[[bytes], None] | None = None,
    ) -> bytes:
        """Everything up to and including ``marker``; ``_Silence`` if it has not come within
        ``timeout`` seconds (a board printing its console is no answer). ``consume`` sees the
        bytes before the marker as they arrive (and they are then not returned)."""
        got = bytearray()
        deadline = time.monotonic() + timeout
        while True:
            at = self._buffer.find(marker)
            if at >= 0:
                end = at + len(marker)
                chunk, rest = bytes(self._buffer[:end]), self._buffer[end:]
                self._buffer = bytearray(rest)
                if consume is not None:
                    consume(chunk[: -len(marker)])
                    return marker
                return bytes(got) + chunk
            if consume is not None and len(self._buffer) > len(marker):
                keep = len(marker) - 1
                consume(bytes(self._buffer[: len(self._buffer) - keep]))
                del self._buffer[: len(self._buffer) - keep]
            if RESET_MARK in self._buffer:  # the ROM's first line after a reset
                got += self._buffer
                self._buffer.clear()
                raise _Silence(bytes(got), reset=True)
            data = self._read_some()
            if data:
                self._buffer += data
            elif time.monotonic() > deadline:
                got += self._buffer
                self._buffer.clear()
                raise _Silence(bytes(got))

    def _read_exact(self, n: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self._buffer) < n:
            data = self._read_some()
            if data:
                self._buffer += data
            elif time.monotonic() > deadline:
                raise _Silence(bytes(self._buffer))
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    def _drain(self, quiet: float, most: float = 1.0) -> bytes:
        """Read until the board has said nothing for ``quiet`` seconds, or ``most`` passed."""
        got = bytearray(self._buffer)
        self._buffer.clear()
        last = started = time.monotonic()
        while time.monotonic() - last < quiet and time.monotonic() - started < most:
            data = self._read_some()
            if data:
                got += data
                last = time.monotonic()
        return bytes(got)

    # --- entering and leaving ---------------------------------------------------------------

    def enter(self, *, within: float = 3.0) -> None:
        """Stop the board's program and enter the raw REPL."""
        heard = bytearray()
        for _ in range(2):
            self._write(b"\r" + CTRL_C)
            heard += self._drain(0.15)
        self._write(b"\r" + CTRL_A)
        try:
            self._read_until(RAW_PROMPT, within)
        except _Silence as silence:
            heard += silence.got
            if not heard.strip(b"\r\n\x00"):
                raise NoBoard(
                    f"no board answers on {self.name}: check it has power and the cable carries"
                    " data (not a charge-only cable)"
                ) from None
            raise IgnoresCtrlC(
                f"the board on {self.name} talks but its program ignores Ctrl-C: hold BOOT,"
                " press and release EN, release BOOT, then try again"
            ) from None

    def leave(self) -> None:
        """Back to the friendly REPL (Ctrl-B)."""
        self._write(b"\r" + CTRL_B)

    # --- running code -----------------------------------------------------------------------

    def exec(
        self,
        code: str | bytes,
        *,
        timeout: float = 10.0,
        out: Callable[[bytes], None] | None = None,
    ) -> bytes:
        """Run ``code`` on the board; return its output (or stream it to ``out``).

        ``timeout`` is the longest it may run. Raises
        :class:`BoardCodeError` with the board's traceback, :class:`BytesDropped` when the
        code arrived garbled, :class:`BoardLost` when the board stops answering.
        """
        data = code.encode() if isinstance(code, str) else code
        self._send(data)
        lost = (
            f"the board on {self.name} stopped answering while it ran code: check the cable"
            " and its power"
        )
        try:
            output = self._read_until(CTRL_D, timeout, out)
            error = self._read_until(CTRL_D, timeout)[:-1]
            self._read_until(b">", timeout)
        except _Silence as silence:
            if silence.reset:
                raise BoardLost(
                    f"the board on {self.name} reset while it ran code (EN pressed, DTR/RTS"
                    " toggled, or its power dipped): what was half-sent is not used; run the"
                    " command again"
                ) from None
            raise BoardLost(lost) from None
        if error:
            text = error.decode(errors="replace")
            if any(mark in text for mark in _GARBLED):
                raise BytesDropped(f"bytes were lost on the line to {self.name}")
            last = text.strip().splitlines()[-1] if text.strip() else text
            raise BoardCodeError(f"the board said: {last}", text)
        return b"" if out is not None else output[:-1]

    def eval(self, expression: str, *, timeout: float = 10.0) -> Any:
        """The value of ``expression`` on the board (its ``repr`` read back)."""
        return self.literal(self.exec(f"print(repr({expression}))", timeout=timeout))

    def facts(self) -> BoardFacts:
        """What the board says about itself: MicroPython version, port, flash and heap."""
        raw = self.literal(self.exec(_FACTS_CODE))
        name, version, abi, platform, free, size, heap, uid = raw
        return BoardFacts(name, tuple(version), abi, platform, free, size, heap, uid)

    def literal(self, output: bytes) -> Any:
        text = output.decode(errors="replace").strip()
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise BytesDropped(
                f"a garbled answer came back on {self.name}: {text[:60]!r}"
            ) from None

    def _send(self, data: bytes) -> None:
        """Hand ``data`` to the raw REPL and have it start running."""
        if self.raw_paste is not False:
            self._write(b"\x05A\x01")
            try:
                answer = self._read_exact(2, 2.0)
            except _Silence:
                raise BoardLost(f"the board on {self.name} stopped answering") from None
            if answer == b"R\x01":
                self.raw_paste = True
                self._paste(data)
                return
            self.raw_paste = False
            if answer != b"R\x00":
                # A MicroPython without raw-paste took it as text, then Ctrl-A: its banner.
                try:
                    self._read_until(RAW_PROMPT, 2.0)
                except _Silence:
                    raise BoardLost(f"the board on {self.name} stopped answering") from None
        for i in range(0, len(data), self.max_write):
            self._write(data[i : i + self.max_write])
            time.sleep(PLAIN_PAUSE_S)
        self._write(CTRL_D)
        try:
            self._read_until(b"OK", 2.0)
        except _Silence:
            # The Ctrl-D itself may have been lost: clear what the board holds.
            self._write(CTRL_C)
            raise BytesDropped(f"bytes were lost on the line to {self.name}") from None

    def _paste(self, data: bytes) -> None:
        """Raw-paste: send only within the window the board granted."""
        try:
            window = int.from_bytes(self._read_exact(2, 2.0), "little")
        except _Silence:
            raise BoardLost(f"the board on {self.name} stopped answering") from None
        remain = window
        sent = 0
        deadline = time.monotonic() + 10.0
        while sent < len(data):
            # Take every grant (or an abort) that has come, waiting only when out of window.
            if remain == 0:
                self._buffer += self._read_some()
            else:
                self._buffer += self._read_waiting()
            while self._buffer:
                c = self._buffer[:1]
                del self._buffer[:1]
                if c == b"\x01":
                    remain += window
                elif c == CTRL_D:  # the board ended the paste early (an error reading it)
                    self._write(CTRL_D)
                    raise BytesDropped(f"the board on {self.name} cut the code short")
                else:
                    raise BytesDropped(f"unexpected bytes from {self.name} during raw-paste")
            if remain == 0:
                if time.monotonic() > deadline:
                    raise BoardLost(f"the board on {self.name} stopped taking code")
                continue
            piece = data[sent : sent + min(remain, self.max_write)]
            self._write(piece)
            sent += len(piece)
            remain -= len(piece)
            deadline = time.monotonic() + 10.0
        self._write(CTRL_D)
        try:
            ack = self._read_until(CTRL_D, 5.0)
        except _Silence:
            raise BoardLost(f"the board on {self.name} never took the end of the code") from None
        if ack.strip(b"\x01") != CTRL_D:
            raise BytesDropped(f"unexpected bytes from {self.name} ending raw-paste")

    # --- after the REPL ---------------------------------------------------------------------

    def reset(self) -> None:
        """Restart the board into its firmware (``machine.reset()``); no answer is awaited."""
        self._send(b"import machine\nmachine.reset()\n")

    def follow(
        self,
        line: Callable[[str], bool],
        *,
        within: float,
    ) -> bool:
        """Pass each console line to ``line`` until it returns True (then True) or ``within``
        seconds pass (then False)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            while b"\n" in self._buffer:
                raw, _, rest = bytes(self._buffer).partition(b"\n")
                self._buffer = bytearray(rest)
                if line(raw.decode(errors="replace").rstrip("\r")):
                    return True
            self._buffer += self._read_some()
        return False
