"""Power cut at every flash write of an update: during the download, the install and the
trial boot. No board is left unbootable; each runs the old release or the new one, says
which, and, since a power cut is nobody's fault, ends on the new one.

A first board counts the flash writes from the moment the release is offered until its
trial is confirmed; then one board per write offset (the 1st write after the offer, the
2nd, ... the last) loses its power at that write, all of them at once against one gateway.
The writes of the sampler and the ring buffer interleave with the update's, so the offsets
cover the update's writes with the others', as on a pole.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hw.engines.base import BoardRunner
from hw.engines.fleet import Fleet, plan_fleet
from tests.ota.boards import banners, lines, ota_state
from tests.ota.conftest import Keys, offer
from tests.support import FAST, GatewayProcess, eventually


def board_config(keys: Keys) -> dict[str, object]:
    return {**FAST, "root_key": keys.root_public.hex(), "ota_selftest_s": 30}


def confirmed(runner: BoardRunner, seq: int) -> bool:
    state = ota_state(runner)
    return state.get("seq") == seq and state.get("state") == "confirmed"


async def writes_of_one_update(
    tmp_path: Path, gateway: GatewayProcess, keys: Keys, release: Path
) -> tuple[int, int]:
    """(seq, flash writes from the offer to the confirmation) on one board with no faults."""
    spec = plan_fleet(1, seed=40, config=board_config(keys))[0]
    fleet = Fleet([spec], tmp_path / "dry", gateway.address, engine="cpython")
    runner = fleet.runners[0]
    fleet.start()
    try:
        assert await eventually(lambda: fleet.online(5) == 1, 30)
        start = runner.faults.flash.life_writes
        seq = offer(gateway, release, board=spec.board_id)
        assert await eventually(lambda: confirmed(runner, seq), 60), lines(runner)
        return seq, runner.faults.flash.life_writes - start
    finally:
        await fleet.stop()


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["cpython", "mpy"])
async def test_a_power_cut_at_any_write_of_an_update_leaves_every_board_running_a_release(
    tmp_path: Path, ota_gateway: GatewayProcess, keys: Keys, release_2: Path, engine: str
) -> None:
    await asyncio.to_thread(ota_gateway.start)
    seq, writes = await writes_of_one_update(tmp_path, ota_gateway, keys, release_2)
    assert writes > 40, writes  # the download alone writes a block at a time
    # Every offset on the CPython engine; every 9th on the VM, one Node process per board.
    offsets = list(range(1, writes + 4)) if engine == "cpython" else list(range(1, writes + 4, 9))
    specs = plan_fleet(len(offsets), seed=41, config=board_config(keys))
    fleet = Fleet(specs, tmp_path / "cut", ota_gateway.address, engine=engine)
    fleet.start()
    try:
        assert await eventually(lambda: fleet.online(5) == len(specs), 60)
        for runner, offset in zip(fleet.runners, offsets, strict=True):
            runner.faults.flash.cut_at_life_write = runner.faults.flash.life_writes + offset
        for kind in {spec.kind for spec in specs}:
            offer(ota_gateway, release_2, kind=kind)
        done = await eventually(lambda: all(confirmed(r, seq) for r in fleet.runners), 240)
        await asyncio.sleep(1)
        stuck = {
            r.spec.board_id: (offset, lines(r)[-3:])
            for r, offset in zip(fleet.runners, offsets, strict=True)
            if not confirmed(r, seq)
        }
        assert done, f"boards not on the new release: {stuck}"
        # Every board is up, sampling and uploading on the release it says it runs.
        acked = {r.spec.board_id: r.record.acked_through for r in fleet.runners}
        assert await eventually(
            lambda: all(r.record.acked_through > acked[r.spec.board_id] for r in fleet.runners),
            30,
        )
    finally:
        await fleet.stop()
    cut = [r for r in fleet.runners if r.faults.flash.cut_at_life_write is None]
    assert len(cut) == len(offsets), "some cut never happened"
    for runner in fleet.runners:
        assert " slot b " in banners(runner)[-1], banners(runner)
        assert runner.record.boots >= 2  # the old release, the new (a cut in boot.py: no boot)
