"""Batch uplinks in-process against real peers: Mosquitto, an HTTP server, a file."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.batches.format import decode
from gateway.batches.keys import load_or_create
from gateway.batches.verify import ChainVerifier, KeySet, verify_sequence
from gateway.store.batch_log import BatchLog, BatchOutbox, StoredBatch
from gateway.store.schema import prepare
from gateway.uplinks.batch_file import BatchFileSender
from gateway.uplinks.batcher import Batcher
from gateway.uplinks.delivery import Backoff, Delivery, Sender
from gateway.uplinks.http import CONTENT_TYPE, HttpSender
from gateway.uplinks.mqtt import MqttSender, batches_topic, status_topic
from tests.batches.test_batcher import fill
from tests.mosquitto import Broker
from tests.upstream import Subscriber, http_upstream, wait_for


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A store with 50 batches of 20 readings, signed."""
    prepare(tmp_path / "gateway.db")
    fill(tmp_path / "gateway.db", 1000)
    batcher = Batcher(
        BatchLog(tmp_path / "gateway.db"),
        load_or_create(tmp_path),
        gateway_id="gw-1",
        site="kec-a",
        max_readings=20,
    )
    while batcher.batch_once(force=True):
        pass
    batcher.log.close()
    return tmp_path


def verifier_for(state: Path) -> ChainVerifier:
    return ChainVerifier(KeySet.from_files([state / "keys" / "gateway.pub"]))


@pytest.fixture
def running() -> Iterator[Callable[[BatchUplink], threading.Event]]:
    """Run uplinks in threads; stop them all at the end."""
    stops: list[tuple[threading.Event, threading.Thread]] = []

    def start(uplink: BatchUplink) -> threading.Event:
        stop = threading.Event()
        thread = threading.Thread(target=uplink.run, args=(stop.is_set,), daemon=True)
        thread.start()
        stops.append((stop, thread))
        return stop

    yield start
    for stop, thread in stops:
        stop.set()
        thread.join(10)


BatchUplink = Delivery[StoredBatch]


def uplink(state: Path, name: str, sender: Sender[StoredBatch], window: int = 8) -> BatchUplink:
    return Delivery(
        name,
        BatchOutbox(BatchLog(state / "gateway.db"), name),
        sender,
        window=window,
        backoff=Backoff(0.05, 0.2),
    )


def test_backoff_grows_exponentially_with_jitter_and_caps() -> None:
    backoff = Backoff(0.5, 4.0)
    delays = [backoff.next_delay() for _ in range(6)]
    for delay, ceiling in zip(delays, [0.5, 1, 2, 4, 4, 4], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) > 1
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def add_batches(state: Path, readings: int) -> None:
    """More readings, batched 20 at a time (as the batcher process would meanwhile)."""
    db_path = state / "gateway.db"
    fill(db_path, readings, first=100_000)
    batcher = Batcher(
        BatchLog(db_path), load_or_create(state), gateway_id="gw-1", site="kec-a", max_readings=20
    )
    while batcher.batch_once(force=True):
        pass
    batcher.log.close()


@pytest.mark.interop
def test_mqtt_delivers_everything_in_order_after_a_broker_outage_http_unaffected(
    state: Path, mosquitto: Broker, running: Callable[[BatchUplink], threading.Event]
) -> None:
    topic = batches_topic("kec-a", "gw-1")
    before = Subscriber(mosquitto, "simpul/#").start()
    sender = MqttSender(mosquitto.host, mosquitto.port, gateway_id="gw-1", site="kec-a", window=4)
    mqtt_uplink = uplink(state, "mqtt", sender, window=4)
    # Retries at least 0.5 s apart by the end of the outage, so the new subscriber is in
    # place before the uplink reconnects (the broker keeps no sessions across its restart).
    mqtt_uplink.backoff = Backoff(0.25, 1.0)
    running(mqtt_uplink)
    assert wait_for(lambda: mqtt_uplink.delivered == 50, 10)
    assert wait_for(lambda: len(before.payloads(topic)) == 50, 5)
    before.stop()
    mosquitto.stop()
    with http_upstream() as upstream:
        http_uplink = uplink(state, "http", HttpSender(upstream.url, gateway_id="gw-1"))
        running(http_uplink)
        add_batches(state, 1000)  # batches 51..100 made while the broker is down
        # HTTP goes on regardless; MQTT keeps failing and backing off.
        assert wait_for(lambda: http_uplink.delivered == 100, 10)
        assert wait_for(lambda: mqtt_uplink.stats.failures >= 3, 10)
        assert mqtt_uplink.delivered == 50
    mosquitto.start()  # same port
    after = Subscriber(mosquitto, "simpul/#", client_id="test-subscriber-2").start()
    assert wait_for(lambda: mqtt_uplink.delivered == 100, 20), mqtt_uplink.stats
    assert wait_for(lambda: len(after.payloads(topic)) >= 50, 5)
    received = before.payloads(topic) + after.payloads(topic)
    assert [decode(p).seq for p in received] == list(range(1, 101))
    verifier = verifier_for(state)
    for payload in received:
        verifier.feed(payload)
    assert not verifier.failed, verifier.problems
    after.stop()
    late = Subscriber(mosquitto, status_topic("kec-a", "gw-1"), client_id="late").start()
    assert wait_for(lambda: bool(late.messages), 5)
    assert late.messages[0][1:] == (b"online", True)  # retained: a newcomer learns it at once
    late.stop()


@pytest.mark.interop
def test_mqtt_last_will_says_offline_when_the_gateway_vanishes(
    state: Path, mosquitto: Broker
) -> None:
    subscriber = Subscriber(mosquitto, status_topic("kec-a", "gw-1")).start()
    sender = MqttSender(
        mosquitto.host, mosquitto.port, gateway_id="gw-1", site="kec-a", keepalive_s=1
    )
    sender.open()
    assert wait_for(lambda: subscriber.payloads() == [b"online"], 5)
    client = sender._client
    assert client is not None
    client.loop_stop()
    sock = client.socket()
    assert sock is not None
    sock.close()  # no DISCONNECT: as if the process died
    assert wait_for(lambda: subscriber.payloads() == [b"online", b"offline"], 10)
    subscriber.stop()


def test_http_posts_each_batch_once_in_order_with_idempotency_keys(
    state: Path, running: Callable[[BatchUplink], threading.Event]
) -> None:
    with http_upstream() as upstream:
        upstream.fail_with = 503
        http_uplink = uplink(state, "http", HttpSender(upstream.url, gateway_id="gw-1"))
        running(http_uplink)
        assert wait_for(lambda: upstream.answers.count(503) >= 3, 10)
        assert http_uplink.delivered == 0  # 5xx is no delivery
        upstream.fail_with = None
        assert wait_for(lambda: http_uplink.delivered == 50, 20)
    accepted = upstream.accepted()
    assert [decode(b).seq for b in accepted] == list(range(1, 51))
    headers = [h for _, h, _ in upstream.requests if h["_status"] == "201"]
    assert all(h["Content-Type"] == CONTENT_TYPE for h in headers)
    assert [h["Idempotency-Key"] for h in headers] == [f"gw-1-{s}" for s in range(1, 51)]
    verifier = verifier_for(state)
    for body in accepted:
        verifier.feed(body)
    assert not verifier.failed


def test_http_409_for_a_known_key_counts_as_delivered(
    state: Path, running: Callable[[BatchUplink], threading.Event]
) -> None:
    with http_upstream() as upstream:
        upstream.keys.update(f"gw-1-{s}" for s in range(1, 11))  # an earlier attempt got there
        http_uplink = uplink(state, "http", HttpSender(upstream.url, gateway_id="gw-1"))
        running(http_uplink)
        assert wait_for(lambda: http_uplink.delivered == 50, 20)
    assert upstream.answers[:10] == [409] * 10
    assert http_uplink.stats.failures == 0


def test_batch_file_is_a_verifiable_sequence_and_cut_back_after_a_crash(state: Path) -> None:
    directory = state / "out"
    stop = threading.Event()
    file_uplink = uplink(state, "batch_file", BatchFileSender(directory, resume_at=None))
    file_uplink.source.wait_after(0, 1, stop.is_set)
    thread = threading.Thread(target=file_uplink.run, args=(stop.is_set,))
    thread.start()
    assert wait_for(lambda: file_uplink.delivered == 50, 10)
    stop.set()
    thread.join()
    path = directory / "batches.cbor"
    good = path.read_bytes()
    # A crash mid-append: half a batch after the last counted one.
    with path.open("ab") as fp:
        fp.write(good[: len(good) // 3])
    seq, offset = BatchLog(state / "gateway.db").progress("batch_file")
    assert (seq, offset) == (50, len(good))
    sender = BatchFileSender(directory, resume_at=offset)
    sender.open()
    sender.close(graceful=True)
    assert path.read_bytes() == good
    verifier = verifier_for(state)
    outcomes = list(verify_sequence(io.BytesIO(good), verifier))
    assert len(outcomes) == 50
    assert not verifier.failed
