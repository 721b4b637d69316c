"""A board reached through its serial REPL, as mpremote reaches one: the same few lines of
MicroPython on an emulated board's pty (either engine) and on a real board's USB serial port.

At the REPL ``board.Board(config.load(board.Flash()))`` builds a board over the hardware, as
``main.py`` does on a chip; the contract suite then calls its methods there and reads the
results back with ``repr``.
"""

from __future__ import annotations

import ast
import asyncio
import itertools
import time
from typing import Any

from mpremote.transport import TransportExecError  # type: ignore[import-untyped]
from mpremote.transport_serial import SerialTransport  # type: ignore[import-untyped]

from hw.engines.base import BoardRunner

# Binds ``_b`` to a board, and ``_start(key, coroutine)`` to run an async method. A chip and
# the CPython engine's REPL run it to its end with ``asyncio.run``; the MicroPython VM has no
# ``asyncio.run`` (JS drives its loop), so there it runs as a task between REPL commands.
PRELUDE = """\
import asyncio, board, config
_b = board.Board(config.load(board.Flash()))
_done = {}
async def _keep(key, coro):
    try:
        _done[key] = (True, await coro)
    except Exception as e:
        _done[key] = (False, repr(e))
def _start(key, coro):
    try:
        run = asyncio.run
    except AttributeError:
        asyncio.create_task(_keep(key, coro))
    else:
        run(_keep(key, coro))
"""


class ReplBoard:
    """One board at its raw REPL. ``runner`` is the emulated board's, None for a real one."""

    def __init__(self, port: str, runner: BoardRunner | None = None) -> None:
        self.port = port
        self.runner = runner
        self._transport: Any = None
        self._keys = itertools.count()

    async def open(self) -> None:
        await asyncio.to_thread(self._connect)

    def _connect(self) -> None:
        if self._transport is None:
            self._transport = SerialTransport(self.port, baudrate=115200)
        self._transport.enter_raw_repl(soft_reset=False)
        self._transport.exec(PRELUDE)

    async def close(self) -> None:
        if self._transport is not None:
            await asyncio.to_thread(self._transport.close)

    async def exec(self, source: str) -> str:
        """Run statements; their output, or AssertionError with the board's traceback."""
        try:
            out = await asyncio.to_thread(self._transport.exec, source)
        except TransportExecError as e:
            raise AssertionError(f"the board raised:\n{e.error_output}") from None
        return bytes(out).decode()

    async def eval(self, expression: str) -> Any:
        """The value of an expression on the board (anything ``repr`` writes literally)."""
        return ast.literal_eval((await self.exec(f"print(repr({expression}))")).strip())

    async def error(self, source: str) -> str:
        """The name of the exception ``source`` raises on the board."""
        try:
            await asyncio.to_thread(self._transport.exec, source)
        except TransportExecError as e:
            return str(e.error_output).strip().splitlines()[-1].split(":")[0]
        raise AssertionError(f"{source!r} raised nothing")

    async def run(self, coroutine: str, within: float = 10) -> Any:
        """Await a coroutine on the board; its value (AssertionError if it raised)."""
        key = next(self._keys)
        await self.exec(f"_start({key}, {coroutine})")
        deadline = time.monotonic() + within
        while (done := await self.eval(f"_done.get({key})")) is None:
            assert time.monotonic() < deadline, f"{coroutine} never finished"
            await asyncio.sleep(0.05)
        ok, value = done
        assert ok, f"{coroutine} raised {value}"
        return value

    async def restart(self, call: str, cause: str, within: float = 60) -> None:
        """``_b.<call>`` restarts the board: wait for its firmware to boot again with
        ``cause``, then stop it at the REPL once more."""

        def restart() -> bytes:
            self._transport.exec_raw_no_follow(f"_b.{call}")
            seen: bytes = self._transport.read_until(
                1, b" cause " + cause.encode(), timeout=None, timeout_overall=within
            )
            return seen

        seen = await asyncio.to_thread(restart)
        assert seen.endswith(b" cause " + cause.encode()), seen[-300:]
        await asyncio.to_thread(self._connect)
