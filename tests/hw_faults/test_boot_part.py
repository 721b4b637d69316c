"""The boot part's choice at every power-on, the same on both engines: a trial slot boots
once and the next reset falls back to the active slot, and a power cut in the boot part's own
write of ``/slots.json`` leaves a board that boots and reports.

On the CPython engine the slot's files never run (it runs the host's firmware sources), so
only the choice, its persisted state and the slot the application names are compared here;
tests/hw_vm/test_boot_slot.py boots a release's own files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hw.engines import ENGINES, runner_for
from hw.engines.base import BoardRunner
from hw.engines.fleet import plan_fleet
from tests.support import (
    QUICK,
    GatewayProcess,
    eventually,
    firmware_starts,
    iter_console,
    reset_over_serial,
)

TRIAL = {"active": "a", "trial": "b", "trial_boots": 0}


def board_on_trial(engine: str, tmp_path: Path, gateway: GatewayProcess) -> BoardRunner:
    """A board whose /slots.json puts slot b on trial (its files are the factory's: none)."""
    spec = plan_fleet(1, seed=9, config=QUICK)[0]
    runner = runner_for(engine)(spec, tmp_path / spec.board_id, gateway.address)
    flash = runner.root / "flash"
    flash.mkdir(parents=True)
    (flash / "slots.json").write_text(json.dumps(TRIAL))
    return runner


def slots_state(runner: BoardRunner) -> object:
    return json.loads((runner.root / "flash" / "slots.json").read_text())


async def started(runner: BoardRunner, boots: int) -> bool:
    """Wait until the application has started ``boots`` times."""
    return await eventually(lambda: len(firmware_starts(runner.root)) >= boots, 15, step=0.05)


@pytest.mark.parametrize("engine", ENGINES)
async def test_trial_slot_boots_once_and_the_next_reset_falls_back(
    tmp_path: Path, gateway: GatewayProcess, engine: str
) -> None:
    runner = board_on_trial(engine, tmp_path, gateway)
    runner.start()
    try:
        assert await started(runner, 1), list(iter_console(runner.root))
        assert firmware_starts(runner.root)[0].endswith(" slot b boot 1 cause power_on")
        assert slots_state(runner) == {**TRIAL, "trial_boots": 1}
        await reset_over_serial(runner)  # the trial never confirmed
        assert await started(runner, 2), list(iter_console(runner.root))
        assert firmware_starts(runner.root)[1].endswith(" slot a boot 2 cause soft")
        assert slots_state(runner) == {"active": "a", "trial": None, "trial_boots": 0}
        await reset_over_serial(runner)
        assert await started(runner, 3), list(iter_console(runner.root))
        assert firmware_starts(runner.root)[2].endswith(" slot a boot 3 cause soft")
    finally:
        await runner.stop()


#: What a trial that sampled, uploaded and reported health leaves: its slot confirmed.
CONFIRMED = {"active": "b", "trial": None, "trial_boots": 0}


@pytest.mark.parametrize("engine", ENGINES)
async def test_power_cut_in_the_boot_parts_write_leaves_a_board_that_boots_and_reports(
    tmp_path: Path, gateway: GatewayProcess, engine: str
) -> None:
    runner = board_on_trial(engine, tmp_path, gateway)
    # The first write after power-on is the boot part's: the trial's boot counted.
    runner.faults.flash.cut_at_write = 1
    runner.start()
    try:
        assert await started(runner, 1), list(iter_console(runner.root))
        assert await eventually(lambda: runner.record.acked_through >= 1, 15, step=0.05)
        assert await eventually(lambda: slots_state(runner) == CONFIRMED, 15, step=0.05)
    finally:
        await runner.stop()
    console = list(iter_console(runner.root))
    cut = console.index("-- power cut during flash write 1")
    assert cut < console.index(firmware_starts(runner.root)[0])
    # The torn write left the old state: the trial still had its one boot, after the cut.
    assert firmware_starts(runner.root)[0].endswith(" slot b boot 1 cause power_on")
    assert runner.record.boots == 1  # the power-on the cut cut short never started the app
