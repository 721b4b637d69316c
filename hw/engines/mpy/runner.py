"""The MicroPython VM engine: a board whose firmware runs on the real interpreter.

Each boot is a Node process running the official WebAssembly build of MicroPython
(``host.py``); the board's hardware stays in this process, the same sensor models, flash
directory, UDP links, radio and faults as the CPython engine's, and so does its lifecycle
(``hw/engines/base.BoardRunner``): a reset, a power cut or a watchdog bite ends the process
and the board boots again in a new one, from what its flash holds.

Each boot runs the firmware's own ``boot.py`` inside the VM (``rom/vmboard.py``), so the
board boots the application slot its boot part chooses, as a chip does: a release's
``.mpy`` files in ``/a/`` or ``/b/`` on the flash (installed by an update, or written there by
a test), else the factory application, the repository's ``firmware/`` sources at ``/rom``.
A power cut in the boot part's write, or a VM process that dies before the firmware starts,
restarts the board as a power cut does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from hw.engines.base import BoardRunner
from hw.engines.micropython import machine_facts
from hw.engines.mpy.host import VmCrash, VmProcess, cpu_seconds
from hw.flash import Flash, PowerCut
from hw.serial_repl import BoardGone


class VmBoardRunner(BoardRunner):
    engine = "mpy"
    lost_at_power_on = (PowerCut, VmCrash)

    def __init__(self, *args: Any, heap_probe: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heap_probe = heap_probe
        self.vm: VmProcess | None = None
        self.cpu_s = 0.0  # CPU time of every boot's VM process so far
        self._line = bytearray()
        self._exec_out: Callable[[bytes], None] | None = None

    async def _boot(self, flash: Flash, cause: str) -> None:
        self.vm = VmProcess(
            flash=flash,
            buses=self.hardware.buses,
            faults=self.faults,
            rssi=self.radio.rssi,
            reset_cause=cause,
            machine=machine_facts(self.spec.board_id, cause),
            on_output=self._output,
            heap_probe=self.heap_probe,
            bare=self.bare,
        )
        await self.vm.start()

    def _output(self, data: bytes) -> None:
        if self._exec_out is not None:
            self._exec_out(data)
            return
        self._line += data
        while b"\n" in self._line:
            line, _, rest = bytes(self._line).partition(b"\n")
            self._line = bytearray(rest)
            self._console_line(line.decode(errors="replace").rstrip("\r"))

    def _start_main(self) -> asyncio.Future[None]:
        assert self.vm is not None
        return self.vm.start_main()

    async def _stop_main(self, main: asyncio.Future[None]) -> None:
        assert self.vm is not None
        await self.vm.stop_main()

    def _watchdog_fed(self) -> float:
        assert self.vm is not None
        return self.vm.watchdog_fed

    def _crashed(self, error: BaseException) -> None:
        # The VM printed the traceback on its console already; a dead process did not.
        if isinstance(error, VmCrash) and "exited" in str(error):
            self._console_line(f"-- {error}")

    async def _power_off(self) -> None:
        if self.vm is not None:
            await self.vm.close()
            self.cpu_s += self.vm.cpu_s
        self._line.clear()

    async def _execute(self, source: str, single: bool, out: Callable[[bytes], None]) -> str:
        assert self.vm is not None
        self._exec_out = out
        try:
            return await self.vm.execute(source, single)
        except VmCrash as crash:
            # The VM ended under the REPL's code (EN pulled, power off): no answer will come.
            raise BoardGone(str(crash)) from None
        finally:
            self._exec_out = None

    def interrupt_execution(self) -> None:
        if self.vm is not None:
            self.vm.interrupt_execution()

    def cpu_seconds(self) -> float:
        """CPU time the board's VM processes used, the running one included."""
        running = cpu_seconds(self.vm.pid) if self.vm and self.vm.pid else 0.0
        return self.cpu_s + running
