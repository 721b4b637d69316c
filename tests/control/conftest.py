"""Fixtures of the control-channel tests: a real Mosquitto, a real ``simpul gateway run`` with
its control process on, an operator who signs for it, and an MQTT client playing the fleet."""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fleet.release import encode_release
from gateway.batches.keys import load
from gateway.codec import cose
from gateway.control import messages, topics
from gateway.control.messages import BoardEntry, Command, Desired
from tests.control.keys import Operator
from tests.mosquitto import Broker, running_mosquitto
from tests.release.chain import APP_FILES, Chain
from tests.support import GatewayProcess

SITE, GATEWAY = "takengon", "gw-takengon-1"


def topic(leaf: str) -> str:
    return topics.gateway_topic(SITE, GATEWAY, leaf)


class Fleet:
    """The fleet's side of the broker: publishes, and keeps what the gateway sends."""

    def __init__(self, broker: Broker) -> None:
        self.received: dict[str, list[bytes]] = {}
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-{os.getpid()}")
        self.client.on_connect = lambda c, u, f, r, p: self._subscribed(c)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._connected.wait(10)

    def _subscribed(self, client: mqtt.Client) -> None:
        client.subscribe([(topic(leaf), 1) for leaf in (topics.STATE, "replies", "events")])
        self._connected.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.received.setdefault(message.topic, []).append(bytes(message.payload))

    def publish(self, where: str, data: bytes, *, retain: bool = False) -> None:
        self.client.publish(where, data, qos=1, retain=retain).wait_for_publish(10)

    def messages(self, leaf: str) -> list[bytes]:
        with self._lock:
            return list(self.received.get(topic(leaf), []))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Setup:
    """One control-channel rig: broker, gateway (not started), operator, release chain."""

    broker: Broker
    gateway: GatewayProcess
    operator: Operator
    chain: Chain
    fleet: Fleet | None = None
    seq: int = field(default=0)

    def start(self) -> Fleet:
        self.gateway.start()
        self.fleet = Fleet(self.broker)
        return self.fleet

    def document(
        self, seq: int, boards: dict[str, int], releases: tuple[int, ...] = (), **more: Any
    ) -> Desired:
        return Desired(
            site=more.pop("site", SITE),
            gateway=more.pop("gateway", GATEWAY),
            seq=seq,
            issued=int(time.time()),
            boards={b: BoardEntry("air", r) for b, r in boards.items()},
            releases=releases,
            **more,
        )

    def command(self, action: str, board: str | None = None, **more: Any) -> Command:
        now = int(time.time())
        return Command(
            site=SITE,
            gateway=GATEWAY,
            id=more.pop("id", os.urandom(16)),
            issued=more.pop("issued", now),
            expires=more.pop("expires", now + 600),
            action=action,
            board=board,
            **more,
        )

    def release_file(self, seq: int) -> bytes:
        return encode_release(self.chain.manifest(seq=seq), APP_FILES)

    def db(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(f"file:{self.gateway.state_dir / 'gateway.db'}?mode=ro", uri=True)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

    def desired_releases(self) -> dict[str, int]:
        try:
            rows = self.db("SELECT target, seq FROM desired_releases WHERE scope = 'board'")
        except sqlite3.OperationalError:
            return {}
        return {str(t): int(s) for t, s in rows}

    def gateway_key(self) -> bytes:
        return load(self.gateway.state_dir).current.public

    def last_state(self) -> dict[str, Any] | None:
        assert self.fleet is not None
        states = self.fleet.messages(topics.STATE)
        if not states:
            return None
        return messages.verify_up(states[-1], self.gateway_key(), site=SITE, gateway=GATEWAY)

    def replies(self) -> list[dict[str, Any]]:
        assert self.fleet is not None
        return [
            messages.verify_up(r, self.gateway_key(), site=SITE, gateway=GATEWAY)
            for r in self.fleet.messages("replies")
        ]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Setup]:
    chain = Chain()
    operator = Operator(root=chain.root)
    root_pub = tmp_path / "root.pub"
    root_pub.write_bytes(cose.public_bytes(chain.root))
    with running_mosquitto(tmp_path / "mosquitto") as broker:
        gateway = GatewayProcess(
            tmp_path / "gateway",
            port=0,
            gateway_id=GATEWAY,
            site=SITE,
            env={
                "SIMPUL_GATEWAY__OTA__ROOT_PUBLIC_KEY": str(root_pub),
                "SIMPUL_GATEWAY__CONTROL__ENABLED": "true",
                "SIMPUL_GATEWAY__CONTROL__STATE_INTERVAL_S": "1",
                "SIMPUL_GATEWAY__BROKER__ADDRESS": broker.address,
            },
        )
        setup = Setup(broker, gateway, operator, chain)
        try:
            yield setup
        finally:
            if setup.fleet is not None:
                setup.fleet.close()
            gateway.close()


def wait_for(predicate: Any, within: float = 20.0, step: float = 0.2) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


__all__ = ["GATEWAY", "SITE", "Fleet", "Setup", "queue", "topic", "wait_for"]
