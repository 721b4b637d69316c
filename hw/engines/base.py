"""The board runner both engines share: one emulated board's life, from power-on to power-off
and again, whichever interpreter runs its firmware.

A boot first runs the board's boot part, as a chip runs ``boot.py`` at every reset: it chooses
the application slot (``firmware/slots.py``: the active one, or a trial release once) and may
write ``/slots.json``. Then the firmware runs (``app.main(board)``) until the chip restarts: a
reset or deep sleep, a power cut, a watchdog bite or a crash; and the board boots again from
what its flash holds, with the matching reset cause. A power cut during the power-on itself
(the boot part's own write torn) restarts the board as any power cut does. Once the serial
REPL interrupted the firmware (Ctrl-C), the board waits at the REPL until a soft reboot or a
reset. The engines differ only in how they run code, which :class:`BoardRunner`'s abstract
hooks (``_boot`` … ``_execute``) say: ``hw/engines/cpython`` runs it in this process,
``hw/engines/mpy`` on the real MicroPython VM.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hw import profiles
from hw.engines.chip import BoardReset, Console, Faults
from hw.engines.micropython import Ticks, unique_id
from hw.esp32_chip import Esp32Chip
from hw.esp_image import BOOTLOADER_OFFSET, micropython_firmware_bin
from hw.firmware_tools import firmware_module
from hw.flash import Flash, PowerCut
from hw.link import Radio
from hw.serial_repl import BoardGone, Repl
from hw.spi_flash import SpiFlash
from hw.uart import Uart

# Seconds a board stays off after a power cut before it boots again.
REBOOT_DELAY_S = 0.05


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
        elif kind == "E" and not rest.startswith(("gateway", "upload", "flash", "oscore")):
            self.sensor_faults += 1


@dataclass
class _Command:
    """Something the serial REPL asks of a running board."""

    kind: str  # interrupt | reboot | reset | power_cut
    run_main: bool = True
    cause: str = "soft"
    done: asyncio.Future[bool] | None = None


class BoardRunner(abc.ABC):
    """One emulated board, booting again whenever it resets (``hw/serial_repl.ReplTarget``).

    The hardware (buses with sensor models, flash directory, faults, radio) lives here for the
    board's whole life; each boot reads the board's config from its flash and gets fresh ticks,
    then the engine's hooks run the firmware.
    """

    engine: str  # the name --engine takes
    #: What, raised by ``_boot``, means the chip died before its firmware started: it boots
    #: again as after a power cut. An engine adds its own (the VM's process dying).
    lost_at_power_on: tuple[type[BaseException], ...] = (PowerCut,)

    def __init__(
        self,
        spec: BoardSpec,
        root: Path,
        gateway: tuple[str, int],
        *,
        faults: Faults | None = None,
        echo: Callable[[str], None] | None = None,
        serial: bool = False,
        rfc2217: bool = False,
        blank: bool = False,
    ) -> None:
        self.spec = spec
        self.root = root
        self.gateway = gateway
        self.faults = faults or Faults()
        self.faults.link.rng.seed(spec.seed)
        self.radio = Radio(spec.seed, self.faults.link)
        self.record = BoardRecord()
        self.hardware = profiles.build_hardware(spec.kind, spec.site, spec.seed)
        self.blank = blank
        self.bare = False  # this boot runs MicroPython alone: nothing installed on it yet
        self.uart: Uart | None = None
        self.chip: Esp32Chip | None = None
        if serial or rfc2217 or blank:
            self.uart = Uart(self.faults.serial, rfc2217=rfc2217, on_pins=self._pins)
        self.repl: Repl | None = Repl(self.uart, self, self.banner()) if self.uart else None
        if self.uart is not None and (rfc2217 or blank):
            self.chip = Esp32Chip(self.uart, self._spi_flash(), unique_id(spec.board_id))
        self.main_running = False
        self.config: dict[str, Any] = {}  # this boot's /config.json, with defaults
        self.ticks = Ticks()
        self._echo = echo
        self._task: asyncio.Task[None] | None = None
        self._commands: asyncio.Queue[_Command] = asyncio.Queue()
        self._rebooted: list[asyncio.Future[bool]] = []
        self._console: Console | None = None

    @property
    def serial_path(self) -> str | None:
        """The pty a technician's tool opens to reach this board's REPL (``--serial``)."""
        return self.uart.path if self.uart else None

    @property
    def rfc2217_url(self) -> str | None:
        """``rfc2217://127.0.0.1:PORT``: the same serial port with DTR/RTS wired to EN/IO0."""
        return self.uart.rfc2217_url if self.uart else None

    def _spi_flash(self) -> SpiFlash:
        """The chip's flash: erased on a blank board, else holding MicroPython at 0x1000."""
        path = self.root / "spi_flash.bin"
        new = not path.exists()
        flash = SpiFlash(path, on_vfs_erased=self._wipe_filesystem)
        if new and not self.blank:
            flash.write_image(BOOTLOADER_OFFSET, micropython_firmware_bin())
        return flash

    def _wipe_filesystem(self) -> None:
        """The chip's vfs sectors were erased: every file of the board's flash is gone."""
        flash_dir = self.root / "flash"
        if flash_dir.exists():
            shutil.rmtree(flash_dir)
        flash_dir.mkdir(parents=True)

    def _pins(self, en: bool, io0: bool) -> None:
        if self.chip is not None:
            self.chip.set_pins(en, io0)

    def _installed(self) -> bool:
        """Whether the board's filesystem holds the application (a blank board's does once a
        technician installed it; any other board's always does)."""
        return not self.blank or (self.root / "flash" / "boot.py").exists()

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

    # --- the lifecycle ------------------------------------------------------------------------

    async def run(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.blank:
            Flash(self.root / "flash")  # an empty filesystem
        else:
            provision_flash(Flash(self.root / "flash"), self.provisioned_config())
        self._console = Console(self.root / "console.log", self._echo)
        if self.repl is not None:
            self.repl.start()
        cause, run_main = "power_on", True
        try:
            while True:
                if self.chip is not None:
                    cause = await self.chip.boot_rom(cause)
                self.bare = not self._installed()
                if self.bare:
                    run_main = False
                if not await self._power_on(cause):
                    cause, run_main = "power_on", True
                    continue
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

    async def _power_on(self, cause: str) -> bool:
        """Boot the chip (its boot part included); False if it lost power before the end."""
        flash = Flash(self.root / "flash", self.faults.flash)
        # MicroPython alone reads no config; the application's boot part needs one.
        self.config = {} if self.bare else dict(firmware_module("config").load(flash))
        self.ticks = Ticks()
        try:
            await self._boot(flash, cause)
        except self.lost_at_power_on as lost:
            self._console_line(f"-- {lost}")
            await self._power_off()
            await asyncio.sleep(REBOOT_DELAY_S)
            return False
        except BaseException:
            # Stopped (cancelled) while booting: a VM process already started must not
            # outlive the board.
            await self._power_off()
            raise
        return True

    async def _live(self, cause: str, run_main: bool) -> tuple[str, bool]:
        """One boot, until the board restarts: return the next boot's (cause, run firmware)."""
        main = self._start_main() if run_main else None
        self.main_running = main is not None
        if self.repl is not None:
            rom_line = self.chip is None
            if self.bare:  # no main.py: MicroPython's friendly REPL, banner first
                self.repl.board_booted(cause, running=True, rom_line=rom_line)
                self.repl.firmware_ended()
            else:
                self.repl.board_booted(cause, running=self.main_running, rom_line=rom_line)
        for waiter in self._rebooted:
            if not waiter.done():
                waiter.set_result(True)
        self._rebooted.clear()
        getter = asyncio.ensure_future(self._commands.get())
        en_low: asyncio.Future[Any] | None = None
        reset: asyncio.Event | None = None
        if self.chip is not None:
            reset = self.chip.reset_event()
            en_low = asyncio.ensure_future(reset.wait())
        try:
            while True:
                waiting: set[asyncio.Future[Any]] = {getter}
                if en_low is not None:
                    if en_low.done():
                        return "power_on", True  # EN pulled low: the chip is held in reset
                    waiting.add(en_low)
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
                        main = None
                        self.main_running = False
                        await self._power_off()  # nothing runs once the power is gone
                        _resolve(command.done, True)
                        await asyncio.sleep(REBOOT_DELAY_S)
                        return "power_on", True
                if main is not None and self._watchdog_expired():
                    self._console_line("-- watchdog reset")
                    return "wdt", True
        finally:
            getter.cancel()
            if en_low is not None:
                en_low.cancel()
            if self.chip is not None and reset is not None:
                self.chip.forget(reset)
            if main is not None and not main.done():
                await self._stop_main(main)

    async def _after_crash(self, error: BaseException) -> tuple[str, bool]:
        # A reset or a power cut stops the whole chip at once: none of the firmware's other
        # tasks may run (and write to flash) while the board is down.
        if isinstance(error, BoardReset):
            await self._power_off()
            await asyncio.sleep(error.after_ms / 1000)
            return error.cause, True
        if isinstance(error, PowerCut):
            self._console_line(f"-- {error}")
            await self._power_off()
            await asyncio.sleep(REBOOT_DELAY_S)
            return "power_on", True
        # As on a board: the traceback on the console, then the watchdog resets it.
        self._crashed(error)
        await asyncio.sleep(self._watchdog_timeout_s())
        self._console_line("-- watchdog reset")
        return "wdt", True

    def _watchdog_timeout_s(self) -> float:
        return float(self.config.get("watchdog_ms", 120000)) / 1000

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

    async def power_cut(self) -> None:
        """Unplug the board and plug it in again; returns once it is off, before it boots."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._commands.put_nowait(_Command("power_cut", done=done))
        await done

    def ignores_ctrl_c(self) -> bool:
        return self.main_running and self.faults.serial.ignores_ctrl_c

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

    # --- what an engine supplies --------------------------------------------------------------

    @abc.abstractmethod
    async def _boot(self, flash: Flash, cause: str) -> None:
        """Power on the chip with this flash (``self.config`` is loaded from it) and run its
        boot part (``slots.boot``), ready to start the firmware; raise what cut it short."""

    @abc.abstractmethod
    def _start_main(self) -> asyncio.Future[None]:
        """Start the firmware; the future ends when it does (with its exception, if any)."""

    @abc.abstractmethod
    async def _stop_main(self, main: asyncio.Future[None]) -> None:
        """Stop the firmware as Ctrl-C does."""

    @abc.abstractmethod
    def _watchdog_fed(self) -> float:
        """``time.monotonic()`` when the firmware last fed its watchdog."""

    @abc.abstractmethod
    def _crashed(self, error: BaseException) -> None:
        """The firmware died of ``error``: show it on the console as the chip would."""

    @abc.abstractmethod
    async def _power_off(self) -> None:
        """End everything this boot holds (tasks, processes, sockets, files); a second call
        finds nothing left to end."""

    @abc.abstractmethod
    async def _execute(self, source: str, single: bool, out: Callable[[bytes], None]) -> str:
        """Run REPL code on the board (``ReplTarget.execute``); raise what reset the board."""

    @abc.abstractmethod
    def interrupt_execution(self) -> None:
        """Ctrl-C while REPL code runs."""

    # --- control ------------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.ensure_future(self.run())
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _resolve(future: asyncio.Future[bool] | None, value: bool) -> None:
    if future is not None and not future.done():
        future.set_result(value)


def provision_flash(flash: Flash, config: Mapping[str, Any]) -> None:
    """Write /config.json as a technician does at flashing, unless the board has one."""
    path = flash.host_path("/config.json")
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(config), indent=1))
        tmp.replace(path)


def provision_oscore(
    flash: Flash, *, sid: bytes, secret: bytes, rid: bytes = b"", salt: bytes = b""
) -> None:
    """Write ``/oscore.json``, the board's OSCORE key material, as the technician's tool does
    at provisioning (``firmware/oscore.py`` reads it): its Sender ID ``sid``, the gateway's
    ``rid``, the Master Secret and Salt. The board then speaks OSCORE to its gateway."""
    keys = {"sid": sid.hex(), "rid": rid.hex(), "secret": secret.hex(), "salt": salt.hex()}
    path = flash.host_path("/oscore.json")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(keys))
    tmp.replace(path)
