"""The CPython engine: many emulated boards in one process, running the firmware unchanged.

The firmware directory goes on ``sys.path`` and its modules are imported once; every board
gets its own ``EmulatedBoard`` (flash directory, buses with sensor models, UDP link, clocks)
and runs ``app.main(board)`` as a task. A board leaves that task the way a chip does: a
reset or deep sleep, a power cut, a watchdog bite or a crash, and then boots again from
what its flash holds, with the matching reset cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from hw import profiles
from hw.board import BoardReset, Console, EmulatedBoard, Faults
from hw.cpython_repl import Namespace
from hw.flash import Flash, PowerCut
from hw.serial_repl import BoardGone, Repl, SerialPort

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"

# Seconds a board stays off after a power cut or a crash before it boots again.
REBOOT_DELAY_S = 0.05


def firmware_module(name: str) -> ModuleType:
    """Import a firmware module (flat, as on the board) from the firmware directory."""
    path = str(FIRMWARE_DIR)
    if path not in sys.path:
        sys.path.insert(0, path)
    __import__(name)
    return sys.modules[name]


@dataclass(frozen=True)
class BoardSpec:
    """One board of an emulated fleet: what a technician would provision."""

    board_id: str
    kind: str
    site: str
    seed: int
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class BoardRecord:
    """What the engine saw on a board's console, for progress and for tests."""

    samples: dict[int, tuple[int, int]] = field(default_factory=dict)  # seq -> (time_ms, n)
    acked_through: int = 0
    last_ack: float = 0.0
    boots: int = 0
    sensor_faults: int = 0

    def observe(self, line: str) -> None:
        kind, _, rest = line.partition(" ")
        if kind == "S":
            seq, t_ms, n = (int(x) for x in rest.split())
            self.samples[seq] = (t_ms, n)
        elif kind == "A":
            self.acked_through = max(self.acked_through, int(rest.split()[1]))
            self.last_ack = time.monotonic()
        elif kind == "E" and not rest.startswith(("gateway", "upload", "flash")):
            self.sensor_faults += 1


@dataclass
class _Command:
    """Something the serial REPL asks of a running board."""

    kind: str  # interrupt | reboot | reset | power_cut
    run_main: bool = True
    cause: str = "soft"
    done: asyncio.Future[bool] | None = None


class BoardRunner:
    """One emulated board, booting again whenever it resets; the CPython engine.

    A boot runs the firmware (``app.main(board)``) until the chip restarts, or, once the
    serial REPL interrupted it (Ctrl-C), waits at the REPL until a soft reboot or a reset.
    Subclasses run the same lifecycle on another engine (``hw/vm/runner.py``) by replacing
    the ``_power_on`` … ``_execute`` hooks.
    """

    engine = "cpython"

    def __init__(
        self,
        spec: BoardSpec,
        root: Path,
        gateway: tuple[str, int],
        *,
        faults: Faults | None = None,
        echo: Callable[[str], None] | None = None,
        serial: bool = False,
    ) -> None:
        self.spec = spec
        self.root = root
        self.gateway = gateway
        self.faults = faults or Faults()
        self.faults.link.rng.seed(spec.seed)
        self.record = BoardRecord()
        self.hardware = profiles.build_hardware(spec.kind, spec.site, spec.seed)
        self.repl: Repl | None = Repl(SerialPort(), self, self.banner()) if serial else None
        self.main_running = False
        self._echo = echo
        self._task: asyncio.Task[None] | None = None
        self._commands: asyncio.Queue[_Command] = asyncio.Queue()
        self._rebooted: list[asyncio.Future[bool]] = []
        self._console: Console | None = None
        self.board: EmulatedBoard | None = None
        self._namespace: Namespace | None = None

    @property
    def serial_path(self) -> str | None:
        """The pty a technician's tool opens to reach this board's REPL (``--serial``)."""
        return self.repl.port.path if self.repl else None

    def banner(self) -> str:
        return f"MicroPython v1.27.0 on 2025-12-10; ESP32 module ({self.engine} engine) with ESP32"

    def provisioned_config(self) -> dict[str, Any]:
        host, port = self.gateway
        config: dict[str, Any] = {
            "board_id": self.spec.board_id,
            "kind": self.spec.kind,
            "site": self.spec.site,
            "gateway_host": host,
            "gateway_port": port,
        }
        config.update(self.hardware.config)
        config.update(self.spec.config)
        return config

    @property
    def rssi_dbm(self) -> int:
        return -55 - self.spec.seed % 30

    # --- the lifecycle, the same for every engine --------------------------------------------

    async def run(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        provision_flash(Flash(self.root / "flash"), self.provisioned_config())
        self._console = Console(self.root / "console.log", self._echo)
        if self.repl is not None:
            self.repl.start()
        cause, run_main = "power_on", True
        try:
            while True:
                await self._power_on(cause)
                self.record.boots += 1
                try:
                    cause, run_main = await self._live(cause, run_main)
                finally:
                    self.main_running = False
                    await self._power_off()
        finally:
            self._console.close()
            if self.repl is not None:
                await self.repl.stop()

    async def _live(self, cause: str, run_main: bool) -> tuple[str, bool]:
        """One boot, until the board restarts: return the next boot's (cause, run firmware)."""
        main = self._start_main() if run_main else None
        self.main_running = main is not None
        if self.repl is not None:
            self.repl.board_booted(cause, running=self.main_running)
        for waiter in self._rebooted:
            if not waiter.done():
                waiter.set_result(True)
        self._rebooted.clear()
        getter = asyncio.ensure_future(self._commands.get())
        try:
            while True:
                waiting: set[asyncio.Future[Any]] = {getter}
                if main is not None:
                    waiting.add(main)
                timeout = min(1.0, self._watchdog_timeout_s() / 4)
                done, _ = await asyncio.wait(
                    waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if main is not None and main in done:
                    self.main_running = False
                    error = main.exception()
                    main = None
                    if error is not None:
                        return await self._after_crash(error)
                    if self.repl is not None:
                        self.repl.firmware_ended()
                if getter in done:
                    command = getter.result()
                    getter = asyncio.ensure_future(self._commands.get())
                    if command.kind == "interrupt":
                        stopped = main is not None
                        if main is not None:
                            await self._stop_main(main)
                            main = None
                            self.main_running = False
                        _resolve(command.done, stopped)
                    elif command.kind == "reboot":
                        if command.done is not None:
                            self._rebooted.append(command.done)
                        return "soft", command.run_main
                    elif command.kind == "reset":
                        return command.cause, True
                    elif command.kind == "power_cut":
                        await asyncio.sleep(REBOOT_DELAY_S)
                        return "power_on", True
                if main is not None and self._watchdog_expired():
                    self._console_line("-- watchdog reset")
                    return "wdt", True
        finally:
            getter.cancel()
            if main is not None and not main.done():
                await self._stop_main(main)

    async def _after_crash(self, error: BaseException) -> tuple[str, bool]:
        if isinstance(error, BoardReset):
            await asyncio.sleep(error.after_ms / 1000)
            return error.cause, True
        if isinstance(error, PowerCut):
            self._console_line(f"-- {error}")
            await asyncio.sleep(REBOOT_DELAY_S)
            return "power_on", True
        if isinstance(error, _WatchdogBite):
            self._console_line("-- watchdog reset")
            return "wdt", True
        # As on a board: the traceback on the console, then the watchdog resets it.
        self._crashed(error)
        await asyncio.sleep(self._watchdog_timeout_s())
        self._console_line("-- watchdog reset")
        return "wdt", True

    def _watchdog_expired(self) -> bool:
        return time.monotonic() - self._watchdog_fed() > self._watchdog_timeout_s()

    def _console_line(self, line: str) -> None:
        """A line on the board's serial console (the log file, the pty, the record)."""
        if self._console is not None:
            self._console.write_line(line)
        self._observed(line)

    def _observed(self, line: str) -> None:
        if self.main_running:
            self.record.observe(line)
        if self.repl is not None:
            self.repl.console((line + "\n").encode())

    # --- what the serial REPL asks (hw/serial_repl.ReplTarget) --------------------------------

    async def interrupt(self) -> bool:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._commands.put_nowait(_Command("interrupt", done=done))
        return await done

    async def soft_reboot(self, run_main: bool) -> None:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._commands.put_nowait(_Command("reboot", run_main=run_main, done=done))
        await done

    async def execute(self, source: str, single: bool, out: Callable[[bytes], None]) -> str:
        try:
            return await self._execute(source, single, out)
        except BoardReset as reset:
            self._commands.put_nowait(_Command("reset", cause=reset.cause))
            raise BoardGone(str(reset)) from None
        except PowerCut as cut:
            self._console_line(f"-- {cut}")
            self._commands.put_nowait(_Command("power_cut"))
            raise BoardGone(str(cut)) from None

    # --- the CPython engine's hooks -----------------------------------------------------------

    async def _power_on(self, cause: str) -> None:
        flash = Flash(self.root / "flash", self.faults.flash)
        cfg = firmware_module("config").load(flash)
        assert self._console is not None
        self.board = EmulatedBoard(
            cfg,
            flash=flash,
            buses=self.hardware.buses,
            faults=self.faults,
            console=self._console,
            reset_cause=cause,
            rssi_dbm=self.rssi_dbm,
            on_log=self._observed,
        )
        self._namespace = Namespace(flash, cause)

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

    def _watchdog_timeout_s(self) -> float:
        config = self.board.config if self.board else {}
        return float(config.get("watchdog_ms", 120000)) / 1000

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

    # --- control ------------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.ensure_future(self.run())
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class _WatchdogBite(Exception):
    pass


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
        with contextlib.suppress(BaseException):
            await task


def _resolve(future: asyncio.Future[bool] | None, value: bool) -> None:
    if future is not None and not future.done():
        future.set_result(value)


def provision_flash(flash: Flash, config: Mapping[str, Any]) -> None:
    """Write /config.json as a technician does at flashing, unless the board has one."""
    import json

    path = flash.host_path("/config.json")
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(config), indent=1))
        tmp.replace(path)


SITES = ("Takengon", "Tegal", "Cimahi", "Tarutung", "Pematang Siantar")
KINDS = ("air", "water", "bin")


def cycle_config(cycle: float) -> dict[str, float | int]:
    """Board settings for sampling every ``cycle`` seconds on one machine: health every fifth
    cycle, a short CoAP timeout, retries and watchdog scaled to the cycle."""
    return {
        "interval_s": cycle,
        "health_every": 5,
        "coap_ack_timeout_ms": 1000,
        "retry_max_s": max(2 * cycle, 5.0),
        "watchdog_ms": int(max(30.0, 10 * cycle) * 1000),
    }


def plan_fleet(
    count: int, seed: int = 1, config: Mapping[str, Any] | None = None
) -> list[BoardSpec]:
    """Spread ``count`` boards over the programme's sites and node kinds, reproducibly."""
    rng = random.Random(seed)
    specs = []
    for i in range(count):
        site = SITES[i % len(SITES)]
        kind = KINDS[(i // len(SITES)) % len(KINDS)]
        code = profiles.site_code(site).lower()
        specs.append(
            BoardSpec(
                board_id=f"{code}-{kind}-{i + 1:04d}",
                kind=kind,
                site=site,
                seed=rng.randrange(1 << 30),
                config=dict(config or {}),
            )
        )
    return specs


ENGINES = ("cpython", "mpy")


def runner_for(engine: str) -> type[BoardRunner]:
    """The board runner of an engine: ``cpython`` (this process) or ``mpy`` (the real VM)."""
    if engine == "cpython":
        return BoardRunner
    if engine == "mpy":
        from hw.vm.runner import VmBoardRunner

        return VmBoardRunner
    raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")


class Fleet:
    """Many boards in this process's event loop, pointed at one gateway."""

    def __init__(
        self,
        specs: list[BoardSpec],
        state_dir: Path,
        gateway: tuple[str, int],
        *,
        echo: Callable[[str, str], None] | None = None,
        engine: str = "cpython",
        serial: bool = False,
    ) -> None:
        runner_class = runner_for(engine)
        self.runners = [
            runner_class(
                spec,
                state_dir / "boards" / spec.board_id,
                gateway,
                echo=functools.partial(echo, spec.board_id) if echo else None,
                serial=serial,
            )
            for spec in specs
        ]

    def start(self) -> None:
        for runner in self.runners:
            runner.start()

    async def stop(self) -> None:
        await asyncio.gather(*(r.stop() for r in self.runners))

    def online(self, within_s: float) -> int:
        now = time.monotonic()
        return sum(1 for r in self.runners if now - r.record.last_ack <= within_s)

    def sampled(self) -> int:
        return sum(len(r.record.samples) for r in self.runners)

    def buffered(self) -> int:
        total = 0
        for r in self.runners:
            total += sum(1 for seq in r.record.samples if seq > r.record.acked_through)
        return total
