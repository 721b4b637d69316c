"""Board keys over the control channel, end to end: a key fleet.db holds reaches the board's
gateway only sealed (``simpul fleet serve`` → Mosquitto → ``simpul gateway run`` with plain
CoAP off), the board's readings are then taken, a board whose key the fleet never had gets
nothing in, and a rekey reaches the board at its next contact. No secret crosses the broker
in clear."""

from __future__ import annotations

import asyncio
import json
import os
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.oscore.keys import KeyMaterial, generate
from tests.fleet_e2e.conftest import City
from tests.support import eventually

pytestmark = pytest.mark.slow

CONFIG = {"interval_s": 0.5, "health_every": 1, "coap_ack_timeout_ms": 500, "retry_max_s": 2,
          "watchdog_ms": 60_000}  # fmt: skip


class Sniffer:
    """Every byte published on the broker, as anyone who can subscribe to ``#`` sees it."""

    def __init__(self, city: City) -> None:
        self.seen = bytearray()
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sniff-{os.getpid()}")
        self.client.on_message = self._on_message
        self.client.connect(city.broker.host, city.broker.port)
        self.client.subscribe("#")
        self.client.loop_start()

    def _on_message(self, client: object, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.seen += message.payload

    def holds(self, secret: bytes) -> bool:
        with self._lock:
            return secret in self.seen or secret.hex().encode() in self.seen

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def stored(city: City, gateway_id: str, board_id: str) -> int:
    rows = city.gateway_db(
        gateway_id, f"SELECT count(*) FROM readings WHERE board_id = '{board_id}'"
    )
    return int(rows[0][0])


async def test_a_key_in_fleet_db_reaches_the_gateway_sealed_and_a_rekey_reaches_the_board(
    city: City,
) -> None:
    gateway = city.add_gateway("Takengon", oscore=True)
    await asyncio.to_thread(gateway.start)
    gateway_id = gateway.gateway_id
    fleet = city.add_boards(gateway_id, 2, config=CONFIG)
    keyed, unkeyed = (r.spec.board_id for r in fleet.runners)
    key = generate(keyed, b"\x51").material
    stray = generate(unkeyed, b"\x52").material  # on the board, never in fleet.db
    with city.store() as store:
        store.set_board_key(keyed, key)
    fleet.provision_oscore({keyed: key, unkeyed: stray})
    sniffer = Sniffer(city)
    try:
        await asyncio.to_thread(city.serve)
        fleet.start()
        # The fleet learns the gateway's seal key from its state, seals the key to it, and
        # the gateway then takes the keyed board's readings; the other board gets nothing in.
        assert await eventually(lambda: stored(city, gateway_id, keyed) >= 3, 60), (
            city.serve_log()[-2000:] + gateway.stderr_text()[-2000:]
        )
        assert stored(city, gateway_id, unkeyed) == 0
        enrolled = city.gateway_db(gateway_id, "SELECT board_id, source FROM board_keys")
        assert enrolled == [(keyed, "control")]

        # A rekey from the fleet's command line reaches the board at its next contact.
        done = city.fleet("boards", "rekey", keyed)
        assert done.returncode == 0, done.stderr
        with city.store() as store:
            found = store.board_key(keyed)
        assert found is not None
        rekeyed, generation = found
        assert generation == 2
        on_flash = fleet.runners[0].root / "flash" / "oscore.json"

        def switched() -> bool:
            return KeyMaterial.from_json(json.loads(on_flash.read_text())) == rekeyed

        assert await eventually(switched, 60), gateway.stderr_text()[-2000:]
        before = stored(city, gateway_id, keyed)
        assert await eventually(lambda: stored(city, gateway_id, keyed) >= before + 3, 30)
        assert not sniffer.holds(rekeyed.secret)

        # Nothing any board sent went over the broker with a secret in clear.
        assert not sniffer.holds(key.secret)
    finally:
        sniffer.stop()
        await city.stop_boards()
