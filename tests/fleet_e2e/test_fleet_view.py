"""What the fleet manager sees of the city: every board and its health, the gateways'
refusals, commands and their replies, and alerts raised and cleared by the health rules."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.control import messages, topics
from gateway.control.messages import Command
from hw.sensors.battery import BatteryModel
from tests.control.keys import Operator
from tests.fleet_e2e.conftest import SITES, City
from tests.support import FAST, eventually

pytestmark = pytest.mark.slow


async def start(
    city: City,
    per_gateway: int,
    config: dict[str, Any],
    before_boards: Callable[[], None] = lambda: None,
) -> None:
    """Gateways, boards and the fleet manager; ``before_boards`` runs before any board does."""
    for site in SITES:
        city.add_gateway(site)
    for gateway in city.gateways.values():
        await asyncio.to_thread(gateway.start)
    for index, gateway_id in enumerate(city.gateways):
        city.add_boards(gateway_id, per_gateway, config=config, seed=index + 1,
                        kinds=("air", "water", "bin"))  # fmt: skip
    await asyncio.to_thread(city.serve)
    before_boards()
    for fleet in city.boards:
        fleet.start()


async def test_three_gateways_300_boards_all_seen_with_health_within_two_cycles(
    city: City,
) -> None:
    cycle_s = 4.0
    config = {"interval_s": cycle_s, "health_every": 1, "coap_ack_timeout_ms": 1000,
              "retry_max_s": 8, "watchdog_ms": 60_000}  # fmt: skip
    try:
        await start(city, 100, config)
        boards = [r for fleet in city.boards for r in fleet.runners]
        assert len(boards) == 300
        online = await eventually(lambda: all(f.online(2 * cycle_s) == 100 for f in city.boards),
                                  90)  # fmt: skip
        assert online, [f.online(2 * cycle_s) for f in city.boards]
        since_ms = int(time.time() * 1000)
        began = time.monotonic()

        def seen() -> bool:
            with city.store() as store:
                found = store.boards()
            return len(found) == 300 and all(
                b.health_ms is not None and b.health_ms >= since_ms and b.last_health for b in found
            )

        assert await eventually(seen, 2 * cycle_s, step=0.25), city.serve_log()
        took = time.monotonic() - began
        with city.store() as store:
            found = store.boards()
            gateways = store.gateways()
        assert {b.gateway_id for b in found} == set(city.gateways)
        assert all(b.last_health["board"] == b.board_id for b in found)  # type: ignore[index]
        assert all(g.last_state is not None for g in gateways)
        print(f"300 boards' fresh health in fleet.db {took:.1f} s after all were online")
    finally:
        await city.stop_boards()


def publish(city: City, leaf: str, gateway_id: str, data: bytes, *, retain: bool) -> None:
    """Straight to the broker, as anyone who can reach it could."""
    site = city.gateways[gateway_id].site
    assert site is not None
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"intruder-{os.getpid()}")
    client.connect(city.broker.host, city.broker.port)
    client.loop_start()
    try:
        client.publish(topics.gateway_topic(site, gateway_id, leaf), data, qos=1,
                       retain=retain).wait_for_publish(10)  # fmt: skip
    finally:
        client.loop_stop()
        client.disconnect()


async def test_forged_and_replayed_control_messages_are_refused_and_the_fleet_sees_them(
    city: City,
) -> None:
    try:
        await start(city, 2, {**FAST, "health_every": 2})
        gateway_id = "gw-takengon-1"

        def applied() -> int:
            rows = city.gateway_db(gateway_id, "SELECT seq FROM control_desired")
            return int(rows[0][0]) if rows else 0

        assert await eventually(lambda: applied() >= 1, 30), city.serve_log()
        ((recorded,),) = city.gateway_db(gateway_id, "SELECT encoded FROM control_desired")
        # A new enrolment makes the fleet publish a second document: the first is now old.
        with city.store() as store:
            store.enroll_board("takengon-air-100", kind="air", site_id="takengon",
                               gateway_id=gateway_id)  # fmt: skip
        assert await eventually(lambda: applied() >= 2, 30), city.serve_log()
        applied_before = applied()
        desired_before = city.gateway_db(gateway_id, "SELECT * FROM desired_releases")
        intruder = Operator()  # a root of its own: its certificate chains nowhere
        forged_doc = messages.Desired(
            "takengon", gateway_id, 99, int(time.time()), {"takengon-air-000":
            messages.BoardEntry("air", 9)}, (9,))  # fmt: skip
        now = int(time.time())
        fleet_cmd = Command("takengon", gateway_id, os.urandom(16), now, now + 600, "ping")
        expired = Command("takengon", gateway_id, os.urandom(16), now - 700, now - 100, "ping")
        signed = city_operator(city)
        publish(city, topics.DESIRED, gateway_id, intruder.seal(forged_doc), retain=False)
        publish(city, topics.DESIRED, gateway_id, b"\xa1dtypegdesired", retain=False)
        publish(city, topics.DESIRED, gateway_id, bytes(recorded), retain=False)  # replayed
        publish(city, topics.COMMANDS, gateway_id, signed(fleet_cmd), retain=False)
        publish(city, topics.COMMANDS, gateway_id, signed(fleet_cmd), retain=False)  # again
        publish(city, topics.COMMANDS, gateway_id, signed(expired), retain=False)

        def reported() -> dict[str, int]:
            listing = city.fleet("gateways", "--json")
            (gw,) = [g for g in json.loads(listing.stdout)["gateways"]
                     if g["gateway_id"] == gateway_id]  # fmt: skip
            refused: dict[str, int] = ((gw["last_state"] or {}).get("control") or {}).get(
                "refused", {}
            )
            return refused

        want = {"untrusted_key": 1, "unsigned": 1, "stale": 1, "replayed": 1, "expired": 1}
        assert await eventually(
            lambda: all(reported().get(k, 0) >= v for k, v in want.items()), 20
        ), reported()
        assert applied() == applied_before
        assert city.gateway_db(gateway_id, "SELECT * FROM desired_releases") == desired_before
    finally:
        await city.stop_boards()


def city_operator(city: City) -> Any:
    """Seals a message with the fleet's own operator key (what `simpul fleet command` does)."""
    from fleet import keys as fleet_keys

    signer = fleet_keys.load_operator(city.fleet_dir)

    def seal(message: Command) -> bytes:
        return messages.envelope(signer.key, signer.certificate, signer.revocations, message)

    return seal


async def test_a_reboot_sent_from_the_fleet_reaches_the_board_and_is_answered(city: City) -> None:
    try:
        await start(city, 1, {**FAST, "health_every": 2})
        runner = city.boards[0].runners[0]
        board_id = runner.spec.board_id
        assert await eventually(
            lambda: runner.record.boots == 1 and city.boards[0].online(3) == 1, 30
        )
        await asyncio.sleep(2)  # the gateway has its health, so knows its boot count
        sent = await asyncio.to_thread(
            city.simpul, "fleet", "command", "gw-takengon-1", "reboot", "--board", board_id,
            "--broker", city.broker.address, "--wait", "60", "--json",
        )  # fmt: skip
        assert sent.returncode == 0, (sent.stdout, sent.stderr)
        reply = json.loads(sent.stdout)
        assert reply["ok"] is True
        assert reply["result"]["boot_count"] == 2
        assert runner.record.boots == 2
        with city.store() as store:
            (entry,) = [e for e in store.audit_entries() if e.action == "command.reboot"]
        assert (entry.operator, entry.target, entry.result) == ("siti", "gw-takengon-1", "ok")
    finally:
        await city.stop_boards()


async def test_alerts_for_a_stale_board_a_reboot_loop_and_a_draining_battery_raise_and_clear(
    city: City,
) -> None:
    """Each condition is made for real on an emulated board; the rules run every second."""
    city.settings(rules_every_s=1, **{"health__thresholds": {
        "reboot_window_s": 20, "alert_raise_after": 2, "alert_clear_after": 2,
    }})  # fmt: skip
    stale, looping, draining = "takengon-air-000", "tegal-air-000", "cimahi-air-000"

    def draining_battery() -> BatteryModel:
        (runner,) = [r for f in city.boards for r in f.runners if r.spec.board_id == draining]
        battery = runner.hardware.devices["battery"]
        assert isinstance(battery, BatteryModel)
        return battery

    def battery_at_3v9() -> None:
        # From its first report: the drain rule fits a line through the board's history, and
        # a first report at the model's own voltage would make the drain a rise at first.
        draining_battery().source = lambda: 3.9

    try:
        await start(city, 3, {**FAST, "health_every": 1}, before_boards=battery_at_3v9)
        runners = {r.spec.board_id: r for f in city.boards for r in f.runners}
        assert await eventually(lambda: all(f.online(3) == 3 for f in city.boards), 30)
        await asyncio.sleep(6)  # a few health reports each: the cycle is learnt

        def alert(rule: str, subject: str) -> str | None:
            with city.store() as store:
                found = [a for a in store.recent_alerts() if (a.rule, a.subject) == (rule, subject)]
            return found[0].state if found else None

        # A draining battery: 3.9 V falling at 2 V/h.
        battery = draining_battery()
        t0 = time.monotonic()
        battery.source = lambda: 3.9 - (time.monotonic() - t0) * 2 / 3600
        # A reboot loop: three power cuts in a row.
        for _ in range(3):
            await runners[looping].power_cut()
            await asyncio.sleep(2)
        # A stale board: it stops.
        await runners[stale].stop()
        # Each is raised (a loaded machine may already have cleared the reboot loop, whose
        # window is 20 s, by the time the last one is raised).
        raised = await eventually(
            lambda: (
                alert("stale", stale) is not None
                and alert("reboot_loop", looping) is not None
                and alert("battery_drain", draining) is not None
            ),
            90,
        )
        assert raised, [alert(*k) for k in (("stale", stale), ("reboot_loop", looping),
                                            ("battery_drain", draining))]  # fmt: skip
        # Back to normal: the board runs again, the loop stops, the sun charges the battery.
        runners[stale].start()
        t1 = time.monotonic()
        battery.source = lambda: 3.9 + (time.monotonic() - t1) * 20 / 3600
        cleared = await eventually(
            lambda: (
                alert("stale", stale) == "cleared"
                and alert("reboot_loop", looping) == "cleared"
                and alert("battery_drain", draining) == "cleared"
            ),
            120,
        )
        assert cleared, [alert(*k) for k in (("stale", stale), ("reboot_loop", looping),
                                             ("battery_drain", draining))]  # fmt: skip
        with city.store() as store:
            actions = [(e.action, e.target) for e in store.audit_entries()]
        for rule, subject in (("stale", stale), ("reboot_loop", looping),
                              ("battery_drain", draining)):  # fmt: skip
            assert ("alert.raised", f"{rule}:{subject}") in actions
            assert ("alert.cleared", f"{rule}:{subject}") in actions
    finally:
        await city.stop_boards()
