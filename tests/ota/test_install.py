"""A signed release goes from ``simpul release build`` through a gateway process onto
emulated boards, which verify it, install it into their inactive slot, boot it on trial and
confirm it after the self-test; the readings sampled meanwhile reach upstream exactly once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hw.engines.fleet import Fleet, plan_fleet
from tests.ota.boards import banners, ota_state, said, slot_files
from tests.ota.conftest import Keys, offer
from tests.support import (
    FAST,
    GatewayProcess,
    assert_exactly_once,
    drain,
    eventually,
    sampled_through,
    wait_upstream,
)


def board_config(keys: Keys, **more: object) -> dict[str, object]:
    return {**FAST, "root_key": keys.root_public.hex(), "ota_selftest_s": 30, **more}


@pytest.mark.slow
async def test_twenty_boards_install_and_confirm_with_every_reading_upstream_once(
    tmp_path: Path, ota_gateway: GatewayProcess, keys: Keys, release_2: Path
) -> None:
    await asyncio.to_thread(ota_gateway.start)
    specs = plan_fleet(20, seed=11, config=board_config(keys))
    fleet = Fleet(specs, tmp_path, ota_gateway.address, engine="cpython")
    fleet.start()
    try:
        assert await eventually(lambda: fleet.online(5) == len(specs), 30), "boards never online"
        for kind in {s.kind for s in specs}:
            seq = offer(ota_gateway, release_2, kind=kind)
        confirmed = await eventually(
            lambda: all(said(r, f"U confirmed release {seq}") for r in fleet.runners), 120
        )
        waiting = [r.spec.board_id for r in fleet.runners if not said(r, "U confirmed")]
        assert confirmed, f"not confirmed: {waiting}"
        through = sampled_through(fleet)
        await drain(fleet, through)
    finally:
        await fleet.stop()
    await wait_upstream(ota_gateway, fleet, through)
    for runner in fleet.runners:
        state = ota_state(runner)
        assert (state["seq"], state["state"]) == (seq, "confirmed"), state
        assert state["slots"]["b"] == [seq, "0.2.0"]
        assert banners(runner)[-1].startswith("simpul 0.2.0 ")
        assert " slot b " in banners(runner)[-1]
        assert set(slot_files(runner, "b")) >= {"app.mpy", "release.cose"}
    assert_exactly_once(ota_gateway, fleet, through)
