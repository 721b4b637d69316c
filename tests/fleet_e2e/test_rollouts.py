"""Rollouts through the whole system: ``simpul rollout`` writes fleet.db, ``simpul fleet serve``
signs each gateway's part into its desired document, the gateways drive the waves, and
emulated boards install, trial and confirm the release."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from fleet.rollout_cli import describe
from tests.fleet_e2e.conftest import SITES, City, seq_of
from tests.ota.boards import lines, ota_state
from tests.support import FAST, eventually

pytestmark = pytest.mark.slow

BOARD = {**FAST, "ota_selftest_s": 30}


def rollout_state(city: City, rollout_id: str) -> dict[str, Any]:
    done = city.rollout("status", rollout_id, "--json")
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def rollout_now(city: City, rollout_id: str) -> dict[str, Any]:
    """What ``simpul rollout status --json`` says, read from fleet.db in this process: cheap
    enough to poll every second (a ``simpul`` process for each poll took a core away from
    the city); the command itself is asked once it is there."""
    with city.store() as store:
        rollout = store.rollout(rollout_id)
        assert rollout is not None
        return describe(store, rollout)


async def start_city(city: City, per_gateway: int, *, engine: str = "cpython") -> None:
    for site in SITES:
        city.add_gateway(site)
    for gateway in city.gateways.values():
        await asyncio.to_thread(gateway.start)
    for index, gateway_id in enumerate(city.gateways):
        city.add_boards(gateway_id, per_gateway, config=BOARD, engine=engine, seed=index + 1)
    await asyncio.to_thread(city.serve)
    for fleet in city.boards:
        fleet.start()

    def all_reported() -> bool:
        with city.store() as store:
            return all(b.health_ms for b in store.boards())

    assert await eventually(all_reported, 60), city.serve_log()


async def test_a_good_release_rolls_out_wave_by_wave_with_the_soak_respected(city: City) -> None:
    soak_s = 4
    try:
        await start_city(city, 3)
        listener = city.listen()
        started = city.rollout(
            "start", "--release-file", str(city.releases.good), "--kind", "air",
            "--canary", "1", "--waves", "50,100", "--soak", str(soak_s),
            "--confirm-within", "120", "--silent-after", "60", "--id", "good",
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        seq = seq_of(city.releases.good)

        def done() -> bool:
            return bool(rollout_now(city, "good")["state"] == "done")

        assert await eventually(done, 240, step=1), (rollout_state(city, "good"), city.serve_log())
        with city.store() as store:
            boards = store.boards()
        assert {b.running for b in boards} == {seq}
        assert {b.desired for b in boards} == {seq}
        for fleet in city.boards:
            for runner in fleet.runners:
                assert ota_state(runner)["state"] == "confirmed"
        starts: dict[int, list[int]] = {}
        for event in listener.of("rollout_wave_started"):
            starts.setdefault(event["detail"]["wave"], []).append(event["at"])
        assert sorted(starts) == [0, 1, 2], starts
        for wave in (1, 2):
            assert min(starts[wave]) >= min(starts[wave - 1]) + soak_s * 1000, starts
        status = rollout_state(city, "good")
        assert json.loads(json.dumps(rollout_now(city, "good"))) == status  # what was polled
        assert [w["boards"] for w in status["waves"]] == [1, 4, 4]
        assert all(set(w["status"]) == {"confirmed"} for w in status["waves"]), status
    finally:
        await city.stop_boards()


def said_release(runner: Any, seq: int) -> bool:
    """Whether the board's console ever named release ``seq`` (hinted, downloading, ...)."""
    return any(f"release {seq}" in line for line in lines(runner))


async def test_a_release_that_silences_a_sensor_halts_at_the_canary_and_it_goes_back(
    city: City,
) -> None:
    """On the MicroPython VM, so the canary really runs the release's code from its slot."""
    good, bad = seq_of(city.releases.good), seq_of(city.releases.silent_pm)
    try:
        await start_city(city, 2, engine="mpy")
        added = city.fleet("releases", "add", str(city.releases.good))
        assert added.returncode == 0, added.stderr
        started = city.rollout(
            "start", "--release-file", str(city.releases.silent_pm), "--kind", "air",
            "--canary", "1", "--waves", "100", "--soak", "600", "--confirm-within", "300",
            "--silent-after", "8", "--revert-from", str(good), "--id", "bad",
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        status = rollout_state(city, "bad")
        revert = status["revert"]
        assert revert > bad
        with city.store() as store:
            (wave0,) = [b.board_id for b in store.rollout_boards("bad") if b.wave == 0]

        def halted() -> bool:
            return bool(rollout_now(city, "bad")["state"] == "halted")

        assert await eventually(halted, 300, step=1), (rollout_state(city, "bad"), city.serve_log())
        reason = rollout_state(city, "bad")["reason"]
        assert wave0 in reason
        assert "pm" in reason, reason

        def canary_back() -> bool:
            with city.store() as store:
                board = store.board(wave0)
            return board is not None and board.running == revert and board.ota_state == "confirmed"

        assert await eventually(canary_back, 300, step=1), city.serve_log()

        def fleet_wants_revert() -> bool:  # so a later rollout's documents keep it there
            with city.store() as store:
                board = store.board(wave0)
            return board is not None and board.desired == revert

        assert await eventually(fleet_wants_revert, 30), city.serve_log()
        runners = {r.spec.board_id: r for fleet in city.boards for r in fleet.runners}
        assert ota_state(runners[wave0])["seq"] == revert
        for board_id, runner in runners.items():
            if board_id != wave0:
                assert not said_release(runner, bad), (board_id, lines(runner))
                assert not said_release(runner, revert), board_id
    finally:
        await city.stop_boards()


def progress(city: City, gateway_id: str) -> dict[str, Any]:
    rows = city.gateway_db(gateway_id, "SELECT progress FROM control_rollout")
    return json.loads(rows[0][0]) if rows else {}


async def test_a_rollout_goes_on_without_the_fleet_and_through_a_cut_link(city: City) -> None:
    seq = seq_of(city.releases.good)
    try:
        await start_city(city, 3)
        started = city.rollout(
            "start", "--release-file", str(city.releases.good), "--kind", "air",
            "--canary", "1", "--waves", "34,100", "--soak", "3",
            "--confirm-within", "120", "--silent-after", "120", "--id", "outage",
        )  # fmt: skip
        assert started.returncode == 0, started.stderr

        def second_wave_everywhere() -> bool:
            return all(progress(city, g).get("wave", -1) >= 1 for g in city.gateways)

        assert await eventually(second_wave_everywhere, 120, step=0.5), city.serve_log()
        # The fleet manager goes away, and one gateway loses its backhaul.
        city.stop_serve()
        cut = "gw-tegal-1"
        city.links[cut].cut()
        runners = [r for fleet in city.boards for r in fleet.runners]

        def all_confirmed() -> bool:
            return all(
                ota_state(r).get("seq") == seq and ota_state(r).get("state") == "confirmed"
                for r in runners
            )

        assert await eventually(all_confirmed, 180, step=1), [ota_state(r) for r in runners]
        # Every gateway saw its last wave through its soak on its own evidence.
        done = await eventually(
            lambda: all(progress(city, g)["state"] == "done" for g in city.gateways), 30
        )
        assert done, [progress(city, g) for g in city.gateways]
        with city.store() as store:
            assert store.rollout("outage").state == "running"  # type: ignore[union-attr]
        # They come back: the fleet's view catches up with what the boards run.
        city.links[cut].restore()
        await asyncio.to_thread(city.serve)

        def fleet_agrees() -> bool:
            with city.store() as store:
                running = {b.board_id: b.running for b in store.boards()}
                rollout = store.rollout("outage")
            return (
                rollout is not None
                and rollout.state == "done"
                and all(running[r.spec.board_id] == ota_state(r)["seq"] for r in runners)
            )

        assert await eventually(fleet_agrees, 90, step=1), (
            rollout_state(city, "outage"),
            city.serve_log(),
        )
    finally:
        await city.stop_boards()
