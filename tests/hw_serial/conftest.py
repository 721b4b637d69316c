"""An emulated board with its serial REPL on a pty, on each engine, and a terminal to it."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import serial

from hw.engines import ENGINES
from hw.engines.base import BoardRunner
from tests.support import serial_board

MPREMOTE = Path(sys.executable).with_name("mpremote")
MPREMOTE_TIMEOUT_S = 30


@pytest.fixture(params=ENGINES)
async def board(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BoardRunner]:
    async with serial_board(request.param, tmp_path) as runner:
        yield runner


async def wait_for(predicate: object, within: float) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


async def mpremote(board: BoardRunner, *args: str) -> tuple[int, str]:
    """The official mpremote, unmodified, against the board's pty; (exit code, output)."""
    assert board.serial_path is not None
    proc = await asyncio.create_subprocess_exec(
        str(MPREMOTE),
        "connect",
        board.serial_path,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), MPREMOTE_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


class Terminal:
    """A technician's terminal on the board's serial port (pyserial, as any tool opens it)."""

    def __init__(self, path: str) -> None:
        self.port = serial.serial_for_url(path, baudrate=115200, timeout=0)
        self.seen = bytearray()

    def send(self, data: bytes) -> None:
        self.port.write(data)

    async def expect(self, wanted: bytes, within: float = 15) -> bytes:
        """Read until ``wanted`` arrives; return everything read up to and including it."""
        deadline = time.monotonic() + within
        while wanted not in self.seen:
            chunk = self.port.read(4096)
            if chunk:
                self.seen += chunk
                continue
            if time.monotonic() > deadline:
                raise AssertionError(f"never saw {wanted!r}; got {bytes(self.seen)[-300:]!r}")
            await asyncio.sleep(0.01)
        end = self.seen.index(wanted) + len(wanted)
        got = bytes(self.seen[:end])
        del self.seen[:end]
        return got

    async def drain(self, quiet: float = 0.3) -> bytes:
        """Read until the board has been quiet for ``quiet`` seconds."""
        got = bytearray()
        last = time.monotonic()
        while time.monotonic() - last < quiet:
            chunk = self.port.read(4096)
            if chunk:
                got += chunk
                last = time.monotonic()
            else:
                await asyncio.sleep(0.01)
        self.seen.clear()
        return bytes(got)

    def close(self) -> None:
        self.port.close()


@pytest.fixture
async def terminal(board: BoardRunner) -> AsyncIterator[Terminal]:
    assert board.serial_path is not None
    term = Terminal(board.serial_path)
    try:
        yield term
    finally:
        term.close()
