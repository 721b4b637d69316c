"""The VM engine boots the application slot the board's boot part chooses, as a chip does.

A release's app files, compiled by mpy-cross as ``fleet.release`` builds them, are written
into the flash's ``/b/`` and marked ``trial`` in ``/slots.json``, as an update leaves a board
before its reset. The firmware's own ``boot.py`` runs in the VM at every power-on: the trial
release boots once from its ``.mpy`` files, and the next boot falls back to slot ``a``, the
factory application (``/rom``), unless the release confirmed itself.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from fleet.release import compile_app
from hw.engines.fleet import plan_fleet
from hw.engines.mpy.runner import VmBoardRunner
from hw.firmware_tools import FIRMWARE_DIR, firmware_module
from tests.support import (
    QUICK,
    GatewayProcess,
    eventually,
    firmware_starts,
    iter_console,
    reset_over_serial,
)

RELEASE_VERSION = "9.9.9"
TRIAL = {"active": "a", "trial": "b", "trial_boots": 0}


def compile_release(tmp_path: Path, app_source: str | None = None) -> dict[str, bytes]:
    """The app files of a copy of firmware/ whose ``app.VERSION`` is RELEASE_VERSION (or
    whose app.py is ``app_source``), compiled as a release ships them: {"app.mpy": ...}."""
    src = tmp_path / "release-src"
    src.mkdir()
    for source in FIRMWARE_DIR.glob("*.py"):
        shutil.copyfile(source, src / source.name)
    app = src / "app.py"
    if app_source is None:
        app_source, found = re.subn(
            r'^VERSION = "[^"]*"$', f'VERSION = "{RELEASE_VERSION}"', app.read_text(), flags=re.M
        )
        assert found == 1, "app.py names its VERSION on one line"
    app.write_text(app_source)
    return compile_app(src, tmp_path / "release-mpy", "xtensawin")


def install_trial(flash_dir: Path, files: dict[str, bytes]) -> None:
    """What an update leaves on the flash before its reset: slot b filled and on trial."""
    slot = flash_dir / "b"
    slot.mkdir(parents=True)
    for name, data in files.items():
        (slot / name).write_bytes(data)
    (flash_dir / "slots.json").write_text(json.dumps(TRIAL))


def new_board(tmp_path: Path, gateway: GatewayProcess, **config: object) -> VmBoardRunner:
    spec = plan_fleet(1, seed=5, config={**QUICK, **config})[0]
    return VmBoardRunner(spec, tmp_path / spec.board_id, gateway.address)


async def test_trial_release_boots_from_its_mpy_files_once_then_the_factory_app(
    tmp_path: Path, gateway: GatewayProcess
) -> None:
    factory = firmware_module("app").VERSION
    assert factory != RELEASE_VERSION
    runner = new_board(tmp_path, gateway)
    flash = runner.root / "flash"
    install_trial(flash, compile_release(tmp_path))
    board = f"board {runner.spec.board_id} kind {runner.spec.kind}"
    runner.start()
    try:
        started = await eventually(lambda: len(firmware_starts(runner.root)) >= 1, 15, step=0.05)
        assert started, list(iter_console(runner.root))
        assert firmware_starts(runner.root)[0] == (
            f"simpul {RELEASE_VERSION} {board} slot b boot 1 cause power_on"
        )
        assert json.loads((flash / "slots.json").read_text()) == {**TRIAL, "trial_boots": 1}
        await reset_over_serial(runner)  # nothing confirmed the release
        assert await eventually(lambda: len(firmware_starts(runner.root)) >= 2, 15, step=0.05)
        fallback = f"simpul {factory} {board} slot a boot 2 cause soft"
        assert firmware_starts(runner.root)[1] == fallback
        # The factory application runs from /rom: it samples, and the gateway acknowledges.
        assert await eventually(lambda: runner.record.acked_through >= 1, 15, step=0.05)
    finally:
        await runner.stop()
    assert json.loads((flash / "slots.json").read_text()) == {
        "active": "a",
        "trial": None,
        "trial_boots": 0,
    }


async def test_release_that_crashes_at_import_is_left_for_slot_a_after_the_watchdog_reset(
    tmp_path: Path, gateway: GatewayProcess
) -> None:
    broken = 'raise RuntimeError("release app broken at import")\n'
    runner = new_board(tmp_path, gateway, watchdog_ms=1500)
    install_trial(runner.root / "flash", compile_release(tmp_path, app_source=broken))
    runner.start()
    try:
        started = await eventually(lambda: bool(firmware_starts(runner.root)), 15, step=0.05)
        assert started, list(iter_console(runner.root))
    finally:
        await runner.stop()
    console = list(iter_console(runner.root))
    crash = console.index("RuntimeError: release app broken at import")
    assert console[crash - 1].strip() == 'File "app.py", line 1, in <module>'
    assert "-- watchdog reset" in console[crash:]
    # The first boot that reached the application was the second power-on, on slot a.
    assert firmware_starts(runner.root)[0].endswith(" slot a boot 1 cause wdt")
    assert runner.record.boots == 2
