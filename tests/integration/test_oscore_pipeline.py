"""The reading pipeline end to end with OSCORE on both ends: emulated boards holding
``/oscore.json`` (``provision_oscore``) and a gateway process that knows their keys and
speaks nothing else (``security.plain_coap = false``). Every reading sampled is stored,
acknowledged and upstream exactly once, and the gateway refused nothing: on both engines,
the firmware's own OSCORE (``firmware/oscore.py``) against aiocoap's on the gateway."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hw.engines.fleet import plan_fleet
from tests.support import (
    FAST,
    assert_exactly_once,
    assert_nothing_refused,
    drain,
    iter_console,
    oscore_fleet,
    sampled_through,
    wait_upstream,
)

#: Boards per engine: on the MicroPython VM each board is a Node process.
FLEETS = {
    "cpython": plan_fleet(6, seed=13, config=FAST),
    "mpy": plan_fleet(9, seed=17, config=FAST)[::3],
}


@pytest.mark.slow
@pytest.mark.parametrize("engine", sorted(FLEETS))
async def test_oscore_fleet_readings_reach_upstream_exactly_once(
    tmp_path: Path, engine: str
) -> None:
    specs = FLEETS[engine]
    gateway, fleet = oscore_fleet(specs, tmp_path, engine=engine)
    await asyncio.to_thread(gateway.start)
    fleet.start()
    try:
        await asyncio.sleep(4)
        through = sampled_through(fleet)
        assert min(through.values()) >= 3, through
        await drain(fleet, through)
        health = await gateway.health()
    finally:
        await fleet.stop()
    await wait_upstream(gateway, fleet, through)
    assert gateway.stop() == 0
    assert_exactly_once(gateway, fleet, through)
    assert_nothing_refused(health)
    assert health["security"]["boards_enrolled"] == len(specs) + 1  # and the health reader
    for runner in fleet.runners:
        console = list(iter_console(runner.root))
        assert any(line.startswith("O oscore <OSCORE sid=") for line in console), console[:5]
