"""The reading pipeline end to end: emulated boards → CoAP → durable gateway → upstream.

The gateway runs as its own process (``simpul gateway run``), the boards in this test's
event loop, everything over real UDP on 127.0.0.1. What each board sampled comes from its
serial console (``S <seq> <time_ms> <n>``), what it saw acknowledged from ``A <first> <last>``.
The lossy-radio case runs on both engines, the same gateway and the same checks: on the
MicroPython VM each board is a Node process running the unchanged firmware files, its buses,
flash and UDP served by this process (``hw/engines/mpy/host.py``).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from hw.engines.base import BoardSpec
from hw.engines.fleet import Fleet, plan_fleet
from tests.support import (
    FAST,
    GatewayProcess,
    assert_exactly_once,
    assert_nothing_refused,
    drain,
    eventually,
    expected_readings,
    iter_console,
    oscore_fleet,
    sampled_through,
    wait_upstream,
)

#: The outage and kill tests run with plain CoAP and with OSCORE on both ends.
SECURITY = ("plain", "oscore")


def gateway_and_fleet(
    specs: list[BoardSpec], root: Path, security: str
) -> tuple[GatewayProcess, Fleet]:
    """A gateway (not started) and boards pointed at it, speaking ``security``."""
    if security == "oscore":
        return oscore_fleet(specs, root)
    gateway = GatewayProcess(root / "gateway")
    return gateway, Fleet(specs, root, gateway.address)


@dataclass(frozen=True)
class LossyRun:
    """How hard an engine is pushed through a lossy radio on a shared CI machine."""

    engine: str
    specs: list[BoardSpec]
    loss: float
    min_samples: int
    # Whether some batch must have timed out and gone again: sure with 21 boards at 20 % loss,
    # left to chance with five (each VM board is a Node process, so fewer of them).
    resends_certain: bool


LOSSY_RUNS = [
    LossyRun("cpython", plan_fleet(21, seed=7, config=FAST), 0.2, 5, resends_certain=True),
    # Five boards over the sites and the three kinds of node (air, water, bin).
    LossyRun("mpy", plan_fleet(15, seed=5, config=FAST)[::3], 0.15, 4, resends_certain=False),
]


@pytest.mark.slow
@pytest.mark.parametrize("run", LOSSY_RUNS, ids=lambda run: run.engine)
async def test_every_sampled_reading_reaches_upstream_exactly_once(
    tmp_path: Path, run: LossyRun
) -> None:
    gateway = GatewayProcess(tmp_path / "gateway")
    await asyncio.to_thread(gateway.start)
    fleet = Fleet(run.specs, tmp_path, gateway.address, engine=run.engine)
    assert all(r.engine == run.engine for r in fleet.runners)
    for runner in fleet.runners:
        # A lossy radio: retransmissions, and whole batches sent again after lost answers.
        runner.faults.link.loss = run.loss
    fleet.start()
    try:
        await asyncio.sleep(6)
        through = sampled_through(fleet)
        assert min(through.values()) >= run.min_samples, through
        for runner in fleet.runners:
            runner.faults.link.loss = 0.0
        await drain(fleet, through)
    finally:
        await fleet.stop()
    await wait_upstream(gateway, fleet, through)
    assert gateway.stop() == 0
    assert {r.spec.kind for r in fleet.runners} == {"air", "water", "bin"}
    if run.resends_certain:
        resent = sum(
            line.startswith("E gateway timeout")
            for r in fleet.runners
            for line in iter_console(r.root)
        )
        assert resent > 0, "the lossy link never made a board send a batch again"
    assert_exactly_once(gateway, fleet, through)
    for runner in fleet.runners:
        # The firmware's own boot line, printed by the engine's interpreter.
        boot_line = "simpul 0.1.0 board " + runner.spec.board_id
        assert any(line.startswith(boot_line) for line in iter_console(runner.root))


@pytest.mark.slow
@pytest.mark.parametrize("security", SECURITY)
async def test_gateway_outage_loses_and_duplicates_nothing(tmp_path: Path, security: str) -> None:
    specs = plan_fleet(10, seed=3, config=FAST)
    gateway, fleet = gateway_and_fleet(specs, tmp_path, security)
    await asyncio.to_thread(gateway.start)
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
        health = await gateway.health() if security == "oscore" else None
    finally:
        await fleet.stop()
    await wait_upstream(gateway, fleet, through)
    gateway.stop()
    assert_exactly_once(gateway, fleet, through)
    if health is not None:
        # A clean stop keeps every replay window: no board is asked for an Echo.
        assert_nothing_refused(health)


@pytest.mark.slow
@pytest.mark.parametrize("security", SECURITY)
async def test_acknowledged_readings_survive_gateway_sigkill(tmp_path: Path, security: str) -> None:
    specs = plan_fleet(10, seed=11, config=FAST)
    gateway, fleet = gateway_and_fleet(specs, tmp_path, security)
    await asyncio.to_thread(gateway.start)
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
        health = await gateway.health() if security == "oscore" else None
    finally:
        await fleet.stop()
    if health is not None:
        # After a SIGKILL the boards' replay windows are unknown: each recovers through Echo
        # (RFC 8613 Appendix B.1.2), which is all the gateway refused.
        assert_nothing_refused(health, but=("echo_challenge",))
    stored = Counter((b, t) for b, _, t in gateway.stored())
    expected = expected_readings(fleet, through)
    assert all(stored[k] == n for k, n in expected.items())

    # The uplink may repeat a line after a kill (at-least-once), never miss one: every
    # reading stored (those sampled after ``through`` too) reaches the file.
    def upstream() -> set[tuple[str, str, int]]:
        return {(line["board"], line["name"], line["time_ms"]) for line in gateway.upstream()}

    await eventually(lambda: gateway.stored() <= upstream(), 20)
    gateway.stop()
    assert gateway.stored() <= upstream()
