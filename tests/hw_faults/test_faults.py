"""Faults on demand, the same on both engines: power cut at every flash write of a cycle, the
link down, lossy and slow, sensors that stop answering or talk garbage. The gateway is a real
process; what the boards sampled comes from their consoles."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from hw.engines import ENGINES
from hw.engines.base import BoardRunner
from hw.engines.fleet import Fleet, plan_fleet
from hw.firmware_tools import firmware_module
from hw.flash import Flash
from tests.support import (
    FAST,
    GatewayProcess,
    assert_exactly_once,
    drain,
    eventually,
    iter_console,
    sampled_through,
    wait_upstream,
)


def last_health(gateway: GatewayProcess, board_id: str) -> dict[str, Any] | None:
    db = sqlite3.connect(f"file:{gateway.state_dir / 'gateway.db'}?mode=ro", uri=True)
    try:
        query = "SELECT last_health FROM boards WHERE board_id = ?"
        row = db.execute(query, (board_id,)).fetchone()
    finally:
        db.close()
    return json.loads(row[0]) if row and row[0] else None


def assert_ring_buffer_whole(runner: BoardRunner) -> None:
    """Open the board's ring buffer as its firmware does at boot: every record is whole."""
    ringbuf = firmware_module("ringbuf")
    senml = firmware_module("senml")
    buffer = ringbuf.RingBuffer(Flash(runner.root / "flash"), "/data/buf", 4096, 16)
    records = buffer.peek(10_000, 1 << 22)
    seqs = [seq for seq, _ in records]
    assert seqs == sorted(set(seqs))
    for _, payload in records:
        assert len(senml.decode(senml.pack([payload[1:]], payload[0]))) == payload[0]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
async def test_power_cut_at_every_write_of_a_cycle_loses_and_corrupts_nothing(
    tmp_path: Path, gateway: GatewayProcess, engine: str
) -> None:
    fleet = Fleet(plan_fleet(1, seed=4, config=FAST), tmp_path, gateway.address, engine=engine)
    runner = fleet.runners[0]
    fleet.start()
    try:
        assert await eventually(lambda: runner.record.acked_through >= 2, 20, step=0.05)
        # Writes since power-on: the boot counter, the ring buffer's appends and its state
        # after each acknowledgement. Cut the power at each in turn, one boot each.
        for n in range(1, 9):
            boots = runner.record.boots
            runner.faults.flash.cut_at_write = n
            rebooted = await eventually(lambda b=boots: runner.record.boots > b, 20, step=0.05)  # type: ignore[misc]
            assert rebooted, f"no power cut at write {n}"
            assert runner.faults.flash.cut_at_write is None
        acked = runner.record.acked_through
        assert await eventually(lambda: runner.record.acked_through > acked, 20, step=0.05)
        through = sampled_through(fleet)
        await drain(fleet, through)
    finally:
        await fleet.stop()
    assert_ring_buffer_whole(runner)
    console = list(iter_console(runner.root))
    cuts = [line for line in console if line.startswith("-- power cut during flash write")]
    assert len(cuts) == 8, cuts
    await wait_upstream(gateway, fleet, through)
    assert_exactly_once(gateway, fleet, through)  # nothing acknowledged lost, nothing torn
    upstream = Counter(line["time_ms"] for line in gateway.upstream())
    sampled = {t_ms: n for t_ms, n in runner.record.samples.values()}
    assert all(sampled.get(t) == n for t, n in upstream.items()), "a record not sampled whole"


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
async def test_link_down_then_lossy_and_slow_delivers_everything_once(
    tmp_path: Path, gateway: GatewayProcess, engine: str
) -> None:
    fleet = Fleet(plan_fleet(2, seed=6, config=FAST), tmp_path, gateway.address, engine=engine)
    fleet.start()
    try:
        assert await eventually(
            lambda: all(r.record.acked_through >= 1 for r in fleet.runners), 20, step=0.05
        )
        for runner in fleet.runners:
            runner.faults.link.down = True
        before = {r.spec.board_id: r.record.acked_through for r in fleet.runners}
        await asyncio.sleep(2.5)  # five cycles with no association
        assert all(r.record.acked_through == before[r.spec.board_id] for r in fleet.runners)
        assert all(max(r.record.samples) >= before[r.spec.board_id] + 3 for r in fleet.runners), (
            "boards stopped sampling while the link was down"
        )
        for runner in fleet.runners:
            runner.faults.link.down = False
            runner.faults.link.loss = 0.25
            runner.faults.link.delay_ms = 80
        await asyncio.sleep(3)
        for runner in fleet.runners:
            runner.faults.link.loss = 0.0
            runner.faults.link.delay_ms = 0
        through = sampled_through(fleet)
        await drain(fleet, through)
    finally:
        await fleet.stop()
    await wait_upstream(gateway, fleet, through)
    assert_exactly_once(gateway, fleet, through)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
async def test_dead_and_garbage_sensors_are_reported_while_the_others_keep_reporting(
    tmp_path: Path, gateway: GatewayProcess, engine: str
) -> None:
    config = {**FAST, "health_every": 2}
    fleet = Fleet(plan_fleet(1, seed=8, config=config), tmp_path, gateway.address, engine=engine)
    runner = fleet.runners[0]
    assert runner.spec.kind == "air"
    board_id = runner.spec.board_id
    fleet.start()
    try:
        assert await eventually(lambda: runner.record.acked_through >= 1, 20, step=0.05)
        runner.hardware.devices["pms5003"].fault = "timeout"  # stops answering
        runner.hardware.devices["bme280"].fault = "garbage"  # answers, with nonsense
        faulted_at = max(runner.record.samples)

        def reported() -> bool:
            health = last_health(gateway, board_id)
            errors = (health or {}).get("sensor_errors", {})
            return "pms5003" in errors and "bme280" in errors

        assert await eventually(reported, 30, step=0.05), last_health(gateway, board_id)
        assert await eventually(lambda: max(runner.record.samples) >= faulted_at + 5, 20, step=0.05)
        through = sampled_through(fleet)
        await drain(fleet, through)
    finally:
        await fleet.stop()
    health = last_health(gateway, board_id)
    assert health is not None
    assert health["sensor_errors"]["pms5003"].get("timeout", 0) >= 1, health
    assert sum(health["sensor_errors"]["bme280"].values()) >= 1, health
    await wait_upstream(gateway, fleet, through)
    # Samples begun after the fault was set (the one in progress may predate it).
    after = {t for seq, (t, _) in runner.record.samples.items() if seq >= faulted_at + 2}
    names = {line["name"] for line in gateway.upstream() if line["time_ms"] in after}
    assert names == {"battery"}, names  # the battery keeps reporting; nothing corrupt goes up
    assert_exactly_once(gateway, fleet, through)
