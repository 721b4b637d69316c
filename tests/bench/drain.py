"""Draining a backlog: 1,000,000 readings already in the outbox, signed and sent to Mosquitto.

The readings go straight into a fresh gateway database (as if the backhaul had been down for
a while); then the real batcher and MQTT uplink processes (the gateway's own process mains)
start, and the clock runs until a subscriber on the broker has received every batch.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from gateway.batches.format import decode
from gateway.codec.cose import sig_structure
from gateway.config import load_config
from gateway.store.batch_log import BatchLog
from gateway.store.schema import prepare
from gateway.uplinks.registry import run_batcher, run_mqtt_uplink
from tests.mosquitto import running_mosquitto

BACKLOG = 1_000_000
BATCH_READINGS = 1000
_START_MS = 1_700_000_000_000
_BOARDS = 200


def fill_backlog(db_path: Path, count: int) -> float:
    """Insert ``count`` readings in one transaction; returns the seconds it took."""
    started = time.perf_counter()
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO readings (board_id, name, unit, kind, value, time_ms, received_ms)"
        " VALUES (?, 'pm2_5', 'ug/m3', 'v', ?, ?, ?)",
        (
            (f"aq-{i % _BOARDS:03d}", 10.0 + (i % 997) / 8, _START_MS + i, _START_MS + i)
            for i in range(count)
        ),
    )
    db.execute("COMMIT")
    db.close()
    return time.perf_counter() - started


class Counting:
    """A QoS 1 subscriber that keeps every payload (decoded after the clock stops)."""

    def __init__(self, host: str, port: int, topic: str, expected: int) -> None:
        self.payloads: list[bytes] = []
        self.expected = expected
        self.done = threading.Event()
        self.last_at = 0.0
        self._subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-subscriber")
        client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, qos=1)
        client.on_subscribe = lambda c, u, m, r, p: self._subscribed.set()
        client.on_message = self._on_message
        client.connect(host, port)
        client.loop_start()
        self.client = client
        if not self._subscribed.wait(10):
            raise RuntimeError("bench subscriber could not subscribe")

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self.payloads.append(message.payload)
        if len(self.payloads) >= self.expected:
            self.last_at = time.perf_counter()
            self.done.set()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _sign_seconds(encoded: bytes, repeats: int = 200) -> float:
    """Seconds one Ed25519 signature of such a batch takes (Sig_structure encoding included)."""
    batch = decode(encoded)
    key = Ed25519PrivateKey.generate()
    started = time.perf_counter()
    for _ in range(repeats):
        key.sign(sig_structure(batch.protected, batch.payload))
    return (time.perf_counter() - started) / repeats


def drain_backlog(seconds: float, backlog: int = BACKLOG) -> dict[str, Any]:
    """Readings/s from a backlog in the outbox to a subscriber on Mosquitto, signed."""
    del seconds  # the backlog sets the length of this one
    with tempfile.TemporaryDirectory(prefix="simpul-bench-") as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        with running_mosquitto(Path(tmp) / "mosquitto") as broker:
            config = load_config(
                env={},
                overrides={
                    "state_dir": state,
                    "gateway_id": "gw-bench",
                    "site": "bench",
                    "batches.max_readings": BATCH_READINGS,
                    "uplinks.file.enabled": False,
                    "uplinks.mqtt.enabled": True,
                    "uplinks.mqtt.broker": broker.address,
                    "uplinks.nice": 0,
                },
            )
            prepare(config.db_path)
            fill_s = fill_backlog(config.db_path, backlog)
            batches = -(-backlog // BATCH_READINGS)
            subscriber = Counting(
                broker.host, broker.port, "simpul/bench/gw-bench/batches", batches
            )
            context = multiprocessing.get_context("spawn")
            stop = context.Event()
            processes = [
                context.Process(target=main, args=(config, stop), name=name)
                for name, main in (("batcher", run_batcher), ("mqtt", run_mqtt_uplink))
            ]
            started = time.perf_counter()
            for process in processes:
                process.start()
            finished = subscriber.done.wait(600)
            elapsed = (subscriber.last_at if finished else time.perf_counter()) - started
            stop.set()
            for process in processes:
                process.join(10)
                if process.exitcode is None:
                    process.kill()
            subscriber.stop()
            log = BatchLog(config.db_path)
            stored = log.fetch_after(0, 1)
            log.close()
    readings = sum(len(decode(p).readings) for p in subscriber.payloads)
    seqs = [decode(p).seq for p in subscriber.payloads]
    sign_s = _sign_seconds(stored[0].encoded) if stored else 0.0
    return {
        "method": (
            f"{backlog} readings (200 boards, floats with units) inserted straight into a fresh "
            "gateway database; then the gateway's batcher and MQTT uplink processes "
            f"(batches of {BATCH_READINGS}, Ed25519 COSE_Sign1, stored with their chain state "
            "in one SQLite transaction each, synchronous=FULL; QoS 1, window 16) drain it to a "
            "Mosquitto on 127.0.0.1; timed from starting the processes (spawn start-up "
            "included) until a QoS 1 subscriber has every batch. signing_share = batches x "
            "the time of one Ed25519 signature over such a batch, divided by the elapsed time"
        ),
        "figures": {
            "readings": backlog,
            "readings_received": readings,
            "batches_received": len(seqs),
            "complete_in_order": finished and seqs == list(range(1, batches + 1)),
            "elapsed_s": round(elapsed, 2),
            "readings_per_s": round(readings / elapsed) if elapsed else 0,
            "signing_share": round(batches * sign_s / elapsed, 3) if elapsed else 0,
            "backlog_insert_s": round(fill_s, 2),
            "target_readings_per_s": 100_000,
        },
    }
