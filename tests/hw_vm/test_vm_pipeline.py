"""Boards on the real MicroPython VM: their readings reach the gateway and upstream exactly
like the CPython engine's (the same gateway process, the same checks).

Each VM board is a Node process running the unchanged firmware files; its buses, flash and
UDP are served by this process (``hw/engines/mpy/host.py``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hw.engines.fleet import Fleet, plan_fleet
from hw.engines.mpy.runner import VmBoardRunner
from tests.support import (
    FAST,
    GatewayProcess,
    assert_exactly_once,
    drain,
    iter_console,
    sampled_through,
    wait_upstream,
)


@pytest.mark.slow
async def test_every_reading_of_vm_boards_reaches_upstream_exactly_once(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "gateway")
    await asyncio.to_thread(gateway.start)
    # Five boards over the sites and the three kinds of node (air, water, bin).
    specs = plan_fleet(15, seed=5, config=FAST)[::3]
    fleet = Fleet(specs, tmp_path, gateway.address, engine="mpy")
    assert all(isinstance(r, VmBoardRunner) for r in fleet.runners)
    for runner in fleet.runners:
        runner.faults.link.loss = 0.15  # retransmissions and batches sent again, on the VM too
    fleet.start()
    try:
        await asyncio.sleep(6)
        through = sampled_through(fleet)
        assert min(through.values()) >= 4, through
        for runner in fleet.runners:
            runner.faults.link.loss = 0.0
        await drain(fleet, through)
    finally:
        await fleet.stop()
    await wait_upstream(gateway, fleet, through)
    assert gateway.stop() == 0
    assert {r.spec.kind for r in fleet.runners} == {"air", "water", "bin"}
    assert_exactly_once(gateway, fleet, through)
    for runner in fleet.runners:
        console = list(iter_console(runner.root))
        # The firmware's own boot line, printed by the VM.
        boot_line = "simpul 0.1.0 board " + runner.spec.board_id
        assert any(line.startswith(boot_line) for line in console)
