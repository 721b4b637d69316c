"""What the fleet manager sees of the city: every board and its health, the gateways'
refusals, commands and their replies, and alerts raised and cleared by the health rules."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.control import messages, topics
from gateway.control.messages import Command
from tests.control.keys import Operator
from tests.fleet_e2e.conftest import SITES, City
from tests.support import FAST, eventually

pytestmark = pytest.mark.slow


async def start(city: City, per_gateway: int, config: dict[str, Any]) -> None:
    for site in SITES:
        city.add_gateway(site)
    for gateway in city.gateways.values():
        await asyncio.to_thread(gateway.start)
    for index, gateway_id in enumerate(city.gateways):
        city.add_boards(gateway_id, per_gateway, config=config, seed=index + 1,
                        kinds=("air", "water", "bin"))  # fmt: skip
    await asyncio.to_thread(city.serve)
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
