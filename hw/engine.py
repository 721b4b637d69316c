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
from hw.flash import Flash, PowerCut

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


class BoardRunner:
    """One emulated board, booting again whenever it resets."""

    def __init__(
        self,
        spec: BoardSpec,
        root: Path,
        gateway: tuple[str, int],
        *,
        faults: Faults | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.spec = spec
        self.root = root
        self.gateway = gateway
        self.faults = faults or Faults()
        self.faults.link.rng.seed(spec.seed)
        self.record = BoardRecord()
        self.hardware = profiles.build_hardware(spec.kind, spec.site, spec.seed)
        self._echo = echo
        self._task: asyncio.Task[None] | None = None
        self.board: EmulatedBoard | None = None

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

    def _boot(self, cause: str, console: Console) -> EmulatedBoard:
        flash = Flash(self.root / "flash", self.faults.flash)
        cfg_module = firmware_module("config")
        cfg = cfg_module.load(flash)
        self.record.boots += 1
        return EmulatedBoard(
            cfg,
            flash=flash,
            buses=self.hardware.buses,
            faults=self.faults,
            console=console,
            reset_cause=cause,
            rssi_dbm=-55 - self.spec.seed % 30,
            on_log=self.record.observe,
        )

    async def run(self) -> None:
        app = firmware_module("app")
        self.root.mkdir(parents=True, exist_ok=True)
        provision_flash(Flash(self.root / "flash"), self.provisioned_config())
        console = Console(self.root / "console.log", self._echo)
        cause = "power_on"
        try:
            while True:
                board = self._boot(cause, console)
                self.board = board
                try:
                    await self._run_until_reset(app, board)
                except BoardReset as reset:
                    cause = reset.cause
                    await asyncio.sleep(reset.after_ms / 1000)
                except PowerCut as cut:
                    console.write_line(f"-- {cut}")
                    cause = "power_on"
                    await asyncio.sleep(REBOOT_DELAY_S)
                except _WatchdogBite:
                    console.write_line("-- watchdog reset")
                    cause = "wdt"
                finally:
                    board.close()
        finally:
            console.close()

    async def _run_until_reset(self, app: ModuleType, board: EmulatedBoard) -> None:
        task = asyncio.ensure_future(app.main(board))
        timeout_s = board.config.get("watchdog_ms", 120000) / 1000
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=min(1.0, timeout_s / 4))
                if not task.done() and time.monotonic() - board.watchdog_fed > timeout_s:
                    raise _WatchdogBite
            exc = task.exception()
            if exc is not None:
                raise exc
        except (Exception, asyncio.CancelledError) as e:
            if isinstance(e, asyncio.CancelledError) and not task.done():
                task.cancel()
                raise
            if not isinstance(e, Exception):
                raise
            # As on a board: the traceback on the console, then the watchdog resets it.
            for line in traceback.format_exception(e):
                board.log(line.rstrip())
            await asyncio.sleep(timeout_s)
            raise _WatchdogBite from e
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

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


class Fleet:
    """Many boards in this process's event loop, pointed at one gateway."""

    def __init__(
        self,
        specs: list[BoardSpec],
        state_dir: Path,
        gateway: tuple[str, int],
        *,
        echo: Callable[[str, str], None] | None = None,
    ) -> None:
        self.runners = [
            BoardRunner(
                spec,
                state_dir / "boards" / spec.board_id,
                gateway,
                echo=functools.partial(echo, spec.board_id) if echo else None,
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
