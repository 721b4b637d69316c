"""The CPython engine: many emulated boards in one process, running the firmware unchanged.

The firmware directory goes on ``sys.path`` and its modules are imported once; every boot of
every board gets its own ``EmulatedBoard`` (flash directory, buses with sensor models, UDP
link, clocks) and runs ``app.main(board)`` as a task in this event loop. REPL code runs in a
worker thread against that boot's namespace (``repl.py``).

At every power-on the board's boot part makes its real choice first, ``slots.boot`` over the
board's flash as ``boot.py`` calls it on a chip: trial boots are counted, a trial that never
confirms falls back, a power cut in the write of ``/slots.json`` is met as on a chip, and the
application names the slot it booted. But whatever that slot holds, this engine then runs
the host's firmware sources: it cannot load ``.mpy`` files, and its boards share one set of
imported modules. So code that differs between releases (an update booting what it
installed) is tested on the VM engine (``hw/engines/mpy``), which imports the slot's files.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from hw.engines.base import BoardRunner
from hw.engines.cpython.board import EmulatedBoard
from hw.engines.cpython.repl import Namespace
from hw.engines.micropython import machine_facts
from hw.firmware_tools import FIRMWARE_DIR, firmware_module
from hw.flash import Flash


class CPythonBoardRunner(BoardRunner):
    engine = "cpython"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.board: EmulatedBoard | None = None
        self._namespace: Namespace | None = None

    def _new_board(
        self, config: Mapping[str, Any], flash: Flash, cause: str, log: Callable[[str], None]
    ) -> EmulatedBoard:
        return EmulatedBoard(
            config,
            flash=flash,
            buses=self.hardware.buses,
            faults=self.faults,
            reset_cause=cause,
            radio=self.radio,
            ticks=self.ticks,
            log=log,
        )

    async def _boot(self, flash: Flash, cause: str) -> None:
        try:
            if not self.bare:
                firmware_module("slots").boot(flash)
        except Exception as error:  # as a chip's boot.py: its traceback, then main.py anyway
            self._crashed(error)
        self.board = self._new_board(self.config, flash, cause, self._console_line)
        self._namespace = Namespace(
            flash,
            ticks=self.ticks,
            machine=machine_facts(self.spec.board_id, cause),
            new_board=lambda config, log: self._new_board(config, flash, cause, log),
        )

    def _start_main(self) -> asyncio.Future[None]:
        assert self.board is not None
        self.board.watchdog_fed = time.monotonic()
        main: asyncio.Future[None] = asyncio.ensure_future(firmware_module("app").main(self.board))
        return main

    async def _stop_main(self, main: asyncio.Future[None]) -> None:
        main.cancel()
        with contextlib.suppress(BaseException):
            await main

    def _watchdog_fed(self) -> float:
        return self.board.watchdog_fed if self.board else time.monotonic()

    def _crashed(self, error: BaseException) -> None:
        for line in traceback.format_exception(error):
            for part in line.rstrip().splitlines():
                self._console_line(part)

    async def _power_off(self) -> None:
        if self.board is not None:
            await _stop_firmware_tasks(self.board)
            self.board.close()

    async def _execute(self, source: str, single: bool, out: Callable[[bytes], None]) -> str:
        namespace = self._namespace
        assert namespace is not None
        loop = asyncio.get_running_loop()

        def threadsafe_out(data: bytes) -> None:
            loop.call_soon_threadsafe(out, data)

        result = await asyncio.to_thread(namespace.execute, source, single, threadsafe_out)
        await asyncio.sleep(0)  # output scheduled from the thread goes out first
        return result

    def interrupt_execution(self) -> None:
        if self._namespace is not None:
            self._namespace.interrupt()


async def _stop_firmware_tasks(board: EmulatedBoard) -> None:
    """A chip without power runs nothing: end every task of this board's firmware.

    When one of the firmware's tasks dies (a power cut mid-write, a crash), ``asyncio.gather``
    ends ``app.main`` but leaves its other tasks running; they would go on writing to the
    flash of a board that is off.
    """
    firmware = str(FIRMWARE_DIR)
    tasks = []
    for task in asyncio.all_tasks():
        frame = getattr(task.get_coro(), "cr_frame", None)
        if frame is None or not frame.f_code.co_filename.startswith(firmware):
            continue
        owner = frame.f_locals.get("self")
        if getattr(owner, "board", None) is board and task is not asyncio.current_task():
            task.cancel()
            tasks.append(task)
    for task in tasks:
        # Python 3.11's wait_for can swallow a cancellation that races with its result, and
        # a task that lives on writes to a flash without power: cancel until it has ended.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.05)
        if not task.cancelled():
            task.exception()  # retrieved: the board's end, not an error of the test
