"""The trial boot: a release runs once from its slot and is confirmed only after its
self-test; one that crashes, or cannot read, upload or report, sends the board back to the
old slot within one reboot, and the old release says why and never takes it again."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hw.engines.base import BoardRunner
from hw.engines.fleet import Fleet, plan_fleet
from tests.ota.boards import banners, lines, ota_state, said
from tests.ota.conftest import Keys, firmware_copy, offer
from tests.support import FAST, GatewayProcess, eventually


def board_config(keys: Keys, **more: object) -> dict[str, object]:
    return {**FAST, "root_key": keys.root_public.hex(), **more}


@contextlib.asynccontextmanager
async def one_board(
    tmp_path: Path, gateway: GatewayProcess, config: dict[str, object], seed: int
) -> AsyncIterator[BoardRunner]:
    """The gateway started and one CPython-engine board online with it, stopped after."""
    await asyncio.to_thread(gateway.start)
    fleet = Fleet(plan_fleet(1, seed=seed, config=config), tmp_path, gateway.address)
    fleet.start()
    try:
        assert await eventually(lambda: fleet.online(5) == 1, 30)
        yield fleet.runners[0]
    finally:
        await fleet.stop()


#: Code of a release that shows it runs from its slot: a line at start.
MARKED = ("app", ("async def main(board):\n", "async def main(board):\n    board.log('X r3')\n"))


@pytest.mark.slow
async def test_the_release_code_runs_from_its_slot_on_the_vm_and_is_confirmed(
    tmp_path: Path, ota_gateway: GatewayProcess, keys: Keys
) -> None:
    release = keys.build("0.3.0", src=firmware_copy(tmp_path / "src", app=MARKED[1]))
    await asyncio.to_thread(ota_gateway.start)
    specs = plan_fleet(2, seed=5, config=board_config(keys, ota_selftest_s=30))
    fleet = Fleet(specs, tmp_path, ota_gateway.address, engine="mpy")
    fleet.start()
    try:
        assert await eventually(lambda: fleet.online(5) == len(specs), 40)
        seq = offer(ota_gateway, release, board=specs[0].board_id)
        offer(ota_gateway, release, board=specs[1].board_id)
        assert await eventually(
            lambda: all(said(r, f"U confirmed release {seq}") for r in fleet.runners), 90
        ), [lines(r) for r in fleet.runners]
    finally:
        await fleet.stop()
    for runner in fleet.runners:
        assert lines(runner, "X r3"), "the slot's code never ran"
        assert banners(runner)[0].startswith("simpul 0.1.0 ")
        assert " slot a " in banners(runner)[0]
        assert " slot b " in banners(runner)[-1]
        assert ota_state(runner)["seq"] == seq


FAILING = {
    # The new code reports health where the gateway has no resource: 4.04, never accepted.
    "health-refused": (
        {"app": ('"/health", body, coap.CBOR', '"/health-v2", body, coap.CBOR')},
        "self-test failed: the gateway accepted no health report",
    ),
    # The new code cannot even be imported: a crash, then the watchdog.
    "crash-at-import": (
        {"app": ('VERSION = "0.1.0"', 'raise ImportError("broken release")\nVERSION = "0.1.0"')},
        "trial boot never started the release (reset: wdt)",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(FAILING))
async def test_a_release_failing_its_self_test_rolls_back_within_one_reboot(
    tmp_path: Path, ota_gateway: GatewayProcess, keys: Keys, case: str
) -> None:
    edits, reason = FAILING[case]
    release = keys.build("0.4.0", src=firmware_copy(tmp_path / "src", **edits))
    await asyncio.to_thread(ota_gateway.start)
    config = board_config(keys, ota_selftest_s=6, watchdog_ms=4000)
    specs = plan_fleet(2, seed=9, config=config)
    fleet = Fleet(specs, tmp_path, ota_gateway.address, engine="mpy")
    fleet.start()
    try:
        assert await eventually(lambda: fleet.online(5) == len(specs), 40)
        for spec in specs:
            seq = offer(ota_gateway, release, board=spec.board_id)
        assert await eventually(lambda: all(said(r, "U rolled_back") for r in fleet.runners), 90), [
            lines(r) for r in fleet.runners
        ]
        # Back on the old release, which keeps uploading and never fetches this one again.
        acked = {r.spec.board_id: r.record.acked_through for r in fleet.runners}
        await asyncio.sleep(3)
    finally:
        await fleet.stop()
    for runner in fleet.runners:
        # Three boots: the old release, the trial (which may die before its banner), the old.
        assert runner.record.boots == 3, banners(runner)
        assert " slot a " in banners(runner)[-1]
        assert runner.record.acked_through > acked[runner.spec.board_id]
        state = ota_state(runner)
        assert (state["state"], state["detail"]) == ("rolled_back", reason), state
        assert state["refused"] == seq
        assert state["seq"] == 0
        assert state["pending"] is None
        assert sum("U installed" in line for line in lines(runner)) == 1
        slots = (runner.root / "flash" / "slots.json").read_text()
        assert '"active": "a"' in slots
        assert '"trial": null' in slots


@pytest.mark.slow
async def test_a_trial_that_cannot_reach_the_gateway_rolls_back(
    tmp_path: Path, ota_gateway: GatewayProcess, keys: Keys, release_2: Path
) -> None:
    config = board_config(keys, ota_selftest_s=4)
    async with one_board(tmp_path, ota_gateway, config, seed=13) as runner:
        seq = offer(ota_gateway, release_2, board=runner.spec.board_id)
        assert await eventually(lambda: said(runner, "U installed"), 60)
        runner.faults.link.down = True  # from before the trial boot until after its end
        assert await eventually(lambda: said(runner, "U rolled_back"), 30), lines(runner)
        runner.faults.link.down = False
        assert await eventually(lambda: runner.record.acked_through > 0, 20)
    state = ota_state(runner)
    assert state["detail"] == "self-test failed: the gateway accepted no readings", state
    assert state["refused"] == seq
    assert state["seq"] == 0
    assert " slot a " in banners(runner)[-1]


@pytest.mark.slow
async def test_a_power_cut_during_the_trial_boot_rolls_back_and_the_release_is_tried_again(
    tmp_path: Path, ota_gateway: GatewayProcess, keys: Keys, release_2: Path
) -> None:
    # A maintenance window that is not now: the board installs, then waits to reboot.
    hour = time.gmtime().tm_hour
    window = [(hour + 2) % 24, (hour + 3) % 24]
    config = board_config(keys, ota_selftest_s=30, ota_window=window)
    async with one_board(tmp_path, ota_gateway, config, seed=17) as runner:
        seq = offer(ota_gateway, release_2, board=runner.spec.board_id)
        assert await eventually(lambda: said(runner, "U installed"), 60), lines(runner)
        assert not said(runner, "U reboot")
        # Power off and on: the trial boots, and its third write (after the boot part's and
        # the boot counter's: the trial saying it started) loses the power again.
        await runner.power_cut()
        runner.faults.flash.cut_at_life_write = runner.faults.flash.life_writes + 3
        assert await eventually(lambda: said(runner, "U rolled_back"), 30), lines(runner)
        assert said(runner, "U rolled_back power lost before the trial confirmed")
        assert ota_state(runner)["refused"] == 0
        # Not refused: the next hint arms the trial again, from the slot already whole.
        assert await eventually(lambda: len(lines(runner, "U installed")) == 2, 30)
        fetched = lines(runner, "U downloading release")
        await runner.power_cut()
        assert await eventually(lambda: said(runner, f"U confirmed release {seq}"), 30)
    assert ota_state(runner)["seq"] == seq
    assert " slot b " in banners(runner)[-1]
    assert len(fetched) == 4, fetched  # manifest and 0/N bytes, twice: no file again
