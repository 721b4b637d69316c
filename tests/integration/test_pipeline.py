"""The reading pipeline end to end: emulated boards → CoAP → durable gateway → upstream.

The gateway runs as its own process (``simpul gateway run``), the boards in this test's
event loop on the CPython engine, everything over real UDP on 127.0.0.1. What each board
sampled comes from its serial console (``S <seq> <time_ms> <n>``), what it saw acknowledged
from ``A <first> <last>``.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from hw.engine import Fleet, plan_fleet
from tests.support import GatewayProcess, iter_console

# Boards that sample twice a second and give up on a silent gateway quickly.
FAST = {
    "interval_s": 0.5,
    "health_every": 4,
    "coap_ack_timeout_ms": 300,
    "coap_max_retransmit": 2,
    "retry_max_s": 1,
    "watchdog_ms": 60000,
}

NAMES = {
    "air": {"temperature", "humidity", "pressure", "pm1", "pm2_5", "pm10", "battery"},
    "water": {"temperature", "humidity", "pressure", "distance", "level", "battery"},
    "bin": {"distance", "fill", "battery"},
}


async def eventually(predicate: Callable[[], bool], within: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.2)
    return predicate()


def sampled_through(fleet: Fleet) -> dict[str, int]:
    return {r.spec.board_id: max(r.record.samples, default=0) for r in fleet.runners}


def expected_readings(fleet: Fleet, through: dict[str, int]) -> dict[tuple[str, int], int]:
    """(board, time_ms) -> how many readings the board sampled then, up to ``through``."""
    return {
        (r.spec.board_id, t_ms): n
        for r in fleet.runners
        for seq, (t_ms, n) in r.record.samples.items()
        if seq <= through[r.spec.board_id]
    }


async def drain(fleet: Fleet, through: dict[str, int], within: float = 40) -> None:
    """Keep the boards running until each saw everything up to ``through`` acknowledged."""
    done = await eventually(
        lambda: all(r.record.acked_through >= through[r.spec.board_id] for r in fleet.runners),
        within,
    )
    behind = {
        r.spec.board_id: (r.record.acked_through, through[r.spec.board_id])
        for r in fleet.runners
        if r.record.acked_through < through[r.spec.board_id]
    }
    assert done, f"boards never saw their samples acknowledged: {behind}"


def assert_exactly_once(gateway: GatewayProcess, fleet: Fleet, through: dict[str, int]) -> None:
    lines = gateway.upstream()
    keys = Counter((line["board"], line["name"], line["time_ms"]) for line in lines)
    repeated = [k for k, c in keys.items() if c > 1]
    assert not repeated, f"readings delivered more than once: {repeated[:5]}"
    per_sample = Counter((line["board"], line["time_ms"]) for line in lines)
    expected = expected_readings(fleet, through)
    missing = {k: (n, per_sample.get(k, 0)) for k, n in expected.items() if per_sample[k] != n}
    assert not missing, f"{len(missing)} samples not upstream exactly once: {list(missing)[:5]}"
    kinds = {r.spec.board_id: r.spec.kind for r in fleet.runners}
    for line in lines:
        assert line["name"] in NAMES[kinds[line["board"]]], line
        assert isinstance(line["value"], int | float), line


async def wait_upstream(gateway: GatewayProcess, fleet: Fleet, through: dict[str, int]) -> None:
    """Give the file uplink time to write out every expected reading."""
    expected = expected_readings(fleet, through)

    def arrived() -> bool:
        have = Counter((line["board"], line["time_ms"]) for line in gateway.upstream())
        return all(have[k] >= n for k, n in expected.items())

    await eventually(arrived, 20)


@pytest.mark.slow
async def test_every_sampled_reading_reaches_upstream_exactly_once(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "gateway")
    await asyncio.to_thread(gateway.start)
    fleet = Fleet(plan_fleet(21, seed=7, config=FAST), tmp_path, gateway.address)
    for runner in fleet.runners:
        # A lossy radio: retransmissions, and whole batches sent again after lost answers.
        runner.faults.link.loss = 0.2
    fleet.start()
    try:
        await asyncio.sleep(6)
        through = sampled_through(fleet)
        assert min(through.values()) >= 5, through
        for runner in fleet.runners:
            runner.faults.link.loss = 0.0
        await drain(fleet, through)
    finally:
        await fleet.stop()
    await wait_upstream(gateway, fleet, through)
    assert gateway.stop() == 0
    assert {r.spec.kind for r in fleet.runners} == {"air", "water", "bin"}
    resent = sum(
        line.startswith("E gateway timeout") for r in fleet.runners for line in iter_console(r.root)
    )
    assert resent > 0, "the lossy link never made a board send a batch again"
    assert_exactly_once(gateway, fleet, through)


@pytest.mark.slow
async def test_gateway_outage_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "gateway")
    await asyncio.to_thread(gateway.start)
    fleet = Fleet(plan_fleet(10, seed=3, config=FAST), tmp_path, gateway.address)
    fleet.start()
    try:
        await asyncio.sleep(2)
        assert await asyncio.to_thread(gateway.stop) == 0
        before = sampled_through(fleet)
        await asyncio.sleep(3)  # six cycles with no gateway
        during = sampled_through(fleet)
        assert all(during[b] >= before[b] + 4 for b in before), "boards stopped sampling"
        assert all(r.record.acked_through <= before[r.spec.board_id] for r in fleet.runners)
        await asyncio.to_thread(gateway.start)
        through = sampled_through(fleet)
        await drain(fleet, through)
    finally:
        await fleet.stop()
    await wait_upstream(gateway, fleet, through)
    gateway.stop()
    assert_exactly_once(gateway, fleet, through)


@pytest.mark.slow
async def test_acknowledged_readings_survive_gateway_sigkill(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "gateway")
    await asyncio.to_thread(gateway.start)
    fleet = Fleet(plan_fleet(10, seed=11, config=FAST), tmp_path, gateway.address)
    rng = random.Random(5)
    fleet.start()
    kills = 0
    try:
        for _ in range(8):
            await asyncio.sleep(rng.uniform(0.4, 1.2))
            gateway.kill()
            kills += 1
            acked = {r.spec.board_id: r.record.acked_through for r in fleet.runners}
            await asyncio.to_thread(gateway.start)
            stored = Counter((b, t) for b, _, t in gateway.stored())
            expected = expected_readings(fleet, acked)
            lost = {k: n for k, n in expected.items() if stored[k] != n}
            assert not lost, f"after kill {kills}, acknowledged readings missing: {lost}"
        through = sampled_through(fleet)
        await drain(fleet, through)
    finally:
        await fleet.stop()
    stored = Counter((b, t) for b, _, t in gateway.stored())
    expected = expected_readings(fleet, through)
    assert all(stored[k] == n for k, n in expected.items())
    # The uplink may repeat a line after a kill (at-least-once), never miss one.
    await wait_upstream(gateway, fleet, through)
    gateway.stop()
    upstream = {(line["board"], line["name"], line["time_ms"]) for line in gateway.upstream()}
    assert gateway.stored() <= upstream
