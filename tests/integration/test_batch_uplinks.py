"""Signed batches from a real gateway to real peers: Mosquitto, an HTTP server, a file.

Through broker outages, SIGKILLs of the whole gateway during upload, and a full disk budget,
``simpul verify`` on what upstream received finds a complete chain holding every reading a
board saw acknowledged (repeats only as whole batches, which it recognises).
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from aiocoap import GET, Context, Message

from gateway.batches.format import ChainState, decode
from gateway.daemon import Gateway
from tests.gateway.conftest import Client, gateway_config
from tests.mosquitto import Broker, free_tcp_port, running_mosquitto
from tests.support import ROOT, GatewayProcess
from tests.upstream import Subscriber, http_upstream, wait_for

GATEWAY_ID = "gw-e2e"
SITE = "kec-a"
TOPIC = f"simpul/{SITE}/{GATEWAY_ID}/batches"
Reading = tuple[str, str, int]


def batch_env(**settings: Any) -> dict[str, str]:
    """``SIMPUL_GATEWAY__…`` variables for dotted settings, as an operator would set them."""
    return {
        "SIMPUL_GATEWAY__" + key.upper().replace(".", "__"): str(value)
        for key, value in settings.items()
    }


def db_value(state_dir: Path, sql: str) -> Any:
    db = sqlite3.connect(f"file:{state_dir / 'gateway.db'}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute(sql).fetchone()
        return row[0] if row else None
    except sqlite3.OperationalError:
        return None
    finally:
        db.close()


def all_delivered(state_dir: Path, uplink: str) -> bool:
    """Every stored reading batched, and every batch delivered by ``uplink``.

    Positions, not rows: pruning may have deleted every delivered row.
    """
    head = db_value(state_dir, "SELECT seq FROM sqlite_sequence WHERE name = 'readings'")
    batched = db_value(state_dir, "SELECT batched_id FROM batch_chain")
    state = db_value(state_dir, "SELECT state FROM batch_chain")
    newest = ChainState.decode(state).seq if state else None
    delivered = db_value(
        state_dir, f"SELECT delivered_seq FROM batch_progress WHERE uplink = '{uplink}'"
    )
    return bool(head and batched == head and newest and delivered == newest)


def newest_seq(state_dir: Path) -> int:
    state = db_value(state_dir, "SELECT state FROM batch_chain")
    return ChainState.decode(state).seq if state else 0


async def delivered_over_mqtt(state_dir: Path, subscriber: Subscriber, within: float) -> int:
    """Wait until every batch went out over MQTT and the newest reached ``subscriber``."""
    assert await asyncio.to_thread(wait_for, lambda: all_delivered(state_dir, "mqtt"), within)
    newest = newest_seq(state_dir)
    assert await asyncio.to_thread(
        wait_for, lambda: newest in {decode(p).seq for p in subscriber.payloads()}, 10
    )
    return newest


def verify(
    key: Path, batches: list[bytes], tmp: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``simpul verify`` on a CBOR sequence of ``batches``, as a consumer runs it."""
    path = tmp / f"received-{time.monotonic_ns()}.cbor"
    path.write_bytes(b"".join(batches))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fleet.cli",
            "verify",
            "--key",
            str(key),
            "--file",
            str(path),
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def verified_readings(result: subprocess.CompletedProcess[str]) -> list[Reading]:
    import json

    return [
        (line["board"], line["name"], line["time_ms"])
        for line in map(json.loads, result.stdout.splitlines())
    ]


def pack(board: str, start_ms: int, count: int) -> bytes:
    """A SenML-CBOR pack of ``count`` readings, one ms apart, as a board sends it."""
    records: list[dict[int, Any]] = [
        {-2: f"urn:dev:simpul:{board}:", -3: start_ms / 1000, 0: "pm2_5", 1: "ug/m3", 2: 12.5}
    ]
    records += [{0: "pm2_5", 1: "ug/m3", 2: 12.5 + i, 6: i / 1000} for i in range(1, count)]
    return cbor2.dumps(records)


def pack_readings(board: str, start_ms: int, count: int) -> list[Reading]:
    return [(board, "pm2_5", start_ms + i) for i in range(count)]


async def post(context: Context, port: int, payload: bytes, timeout_s: float = 3.0) -> Message:
    request = Message(code=2, uri=f"coap://127.0.0.1:{port}/readings", payload=payload)
    request.opt.content_format = 112
    response: Message = await asyncio.wait_for(context.request(request).response, timeout_s)
    return response


async def post_for(
    context: Context, port: int, board: str, start_ms: int, seconds: float, acked: set[Reading]
) -> int:
    """Post packs of 10 for ``seconds``; add each acknowledged (2.04) reading to ``acked``."""
    deadline = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < deadline:
        at = start_ms + sent * 10
        try:
            response = await post(context, port, pack(board, at, 10), 1.0)
        except (TimeoutError, OSError, Exception):  # the gateway may be dying under us
            await asyncio.sleep(0.02)
        else:
            if response.code.is_successful():
                acked.update(pack_readings(board, at, 10))
        sent += 1
    return sent


@pytest.fixture
async def coap() -> AsyncIterator[Context]:
    context = await Context.create_client_context()
    try:
        yield context
    finally:
        await context.shutdown()


# Kills in the suite's run, half of the daemon alone and half of its whole session; the
# long variant (``pytest -m long``) kills it twenty times.
@pytest.mark.slow
@pytest.mark.interop
@pytest.mark.parametrize(
    "kills",
    [pytest.param(6, id="6-kills"), pytest.param(20, id="20-kills", marks=pytest.mark.long)],
)
async def test_sigkilled_again_and_again_during_upload_verify_finds_every_acked_reading(
    tmp_path: Path, coap: Context, kills: int
) -> None:
    with running_mosquitto(tmp_path / "mosquitto") as broker:
        subscriber = Subscriber(broker, TOPIC).start()
        state = tmp_path / "state"
        env = batch_env(
            **{
                "uplinks.mqtt.enabled": "true",
                "uplinks.mqtt.broker": broker.address,
                "uplinks.mqtt.window": 4,
                "uplinks.mqtt.backoff_base_ms": 50,
                "uplinks.mqtt.backoff_max_ms": 200,
                "batches.max_readings": 30,
                "batches.max_age_ms": 50,
            }
        )
        gateway = GatewayProcess(state, gateway_id=GATEWAY_ID, site=SITE, env=env)
        acked: set[Reading] = set()
        rng = random.Random(3)
        start_ms = 1_700_000_000_000
        try:
            for cycle in range(kills):
                gateway.start()
                # Kill at a random moment while readings arrive and batches go out.
                await post_for(coap, gateway.port, "aq-01", start_ms, rng.uniform(0.3, 0.8), acked)
                start_ms += 100_000
                gateway.kill(every_process=cycle % 2 == 0)
            gateway.start()
            newest = await delivered_over_mqtt(state, subscriber, 30)
            gateway.stop()
        finally:
            gateway.close()
            subscriber.stop()
    received = subscriber.payloads()
    result = verify(state / "keys" / "gateway.pub", received, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    readings = verified_readings(result)
    assert len(readings) == len(set(readings)), "a reading given twice"
    assert acked, "no reading was acknowledged"
    assert acked <= set(readings)
    seqs = [decode(p).seq for p in received]
    repeats = len(seqs) - len(set(seqs))
    assert sorted(set(seqs)) == list(range(1, newest + 1))  # every batch, from the first
    assert result.stderr.count("repeat:") == repeats  # any repeat is a whole batch again


@pytest.mark.slow
@pytest.mark.interop
async def test_broker_outage_mqtt_catches_up_in_order_http_never_held_back(
    tmp_path: Path, coap: Context
) -> None:
    port = free_tcp_port()
    broker = Broker(tmp_path / "mosquitto", port)
    broker.start()
    subscriber = Subscriber(broker, TOPIC).start()
    state = tmp_path / "state"
    acked: set[Reading] = set()
    with http_upstream() as upstream:
        env = batch_env(
            **{
                "uplinks.mqtt.enabled": "true",
                "uplinks.mqtt.broker": broker.address,
                # Retries 1 to 2 s apart: the new subscriber is in place before it is back.
                "uplinks.mqtt.backoff_base_ms": 2000,
                "uplinks.mqtt.backoff_max_ms": 2000,
                "uplinks.http.enabled": "true",
                "uplinks.http.url": upstream.url,
                "batches.max_readings": 50,
                "batches.max_age_ms": 50,
            }
        )
        gateway = GatewayProcess(state, gateway_id=GATEWAY_ID, site=SITE, env=env)
        gateway.start()
        try:
            await post_for(coap, gateway.port, "wl-02", 1_700_000_000_000, 1.0, acked)
            assert await asyncio.to_thread(wait_for, lambda: all_delivered(state, "mqtt"), 15)
            subscriber.stop()
            before = subscriber.payloads()
            broker.stop()
            await post_for(coap, gateway.port, "wl-02", 1_700_100_000_000, 1.5, acked)
            # HTTP delivers everything while the broker is down.
            assert await asyncio.to_thread(wait_for, lambda: all_delivered(state, "http"), 15)
            assert not all_delivered(state, "mqtt")
            broker.start()  # same port
            subscriber = Subscriber(broker, TOPIC, client_id="after-outage").start()
            await delivered_over_mqtt(state, subscriber, 20)
            gateway.stop()
        finally:
            gateway.close()
            subscriber.stop()
            broker.stop()
    key = state / "keys" / "gateway.pub"
    over_mqtt = verify(key, before + subscriber.payloads(), tmp_path)
    assert over_mqtt.returncode == 0, over_mqtt.stderr[-3000:]
    assert acked <= set(verified_readings(over_mqtt))
    seqs = [decode(p).seq for p in before + subscriber.payloads()]
    assert seqs == sorted(seqs)  # in order (a resent batch would sit right after itself)
    over_http = verify(key, upstream.accepted(), tmp_path)
    assert over_http.returncode == 0, over_http.stderr[-3000:]
    assert acked <= set(verified_readings(over_http))


def budget_config(state: Path, policy: str, broker_port: int) -> Any:
    return gateway_config(
        state,
        **{
            "uplinks.mqtt.enabled": True,
            "uplinks.mqtt.broker": f"127.0.0.1:{broker_port}",
            # Retries 1 to 2 s apart: once the broker is up, the test's subscriber is in
            # place before the uplink is back (the broker keeps no sessions).
            "uplinks.mqtt.backoff_base_ms": 2000,
            "uplinks.mqtt.backoff_max_ms": 2000,
            "batches.max_readings": 100,
            "batches.max_age_ms": 20,
            "outbox.max_bytes": 400_000,
            "outbox.policy": policy,
            "outbox.retry_after_s": 7,
            "outbox.check_interval_ms": 50,
            "limits.open_gateway_stats": True,  # GET /gateway, a lab flag
        },
    )


async def health(client: Client) -> dict[str, Any]:
    import json

    response = await client.context.request(Message(code=GET, uri=client.uri("gateway"))).response
    assert response.code.is_successful()
    result: dict[str, Any] = json.loads(response.payload)
    return result


@pytest.mark.slow
@pytest.mark.interop
async def test_budget_refuse_answers_503_with_max_age_then_accepts_nothing_lost(
    tmp_path: Path, coap: Context
) -> None:
    port = free_tcp_port()  # no broker yet: batches pile up in the outbox
    gateway = Gateway(budget_config(tmp_path / "state", "refuse", port))
    await gateway.start()
    client = Client(coap, *gateway.bound_address)
    acked: set[Reading] = set()
    refusals: list[Message] = []
    try:
        at = 1_700_000_000_000
        for _ in range(2000):
            response = await client.post("readings", pack("aq-03", at, 50))
            if response.code.is_successful():
                acked.update(pack_readings("aq-03", at, 50))
            else:
                refusals.append(response)
                if len(refusals) >= 3:
                    break
                await asyncio.sleep(0.1)
            at += 1000
        assert refusals, "the budget was never reached"
        assert all(str(r.code) == "5.03 Service Unavailable" for r in refusals)
        assert all(r.opt.max_age == 7 for r in refusals)
        stats = gateway.stats()
        assert stats["refused"]["outbox_full"] >= 3
        assert stats["outbox"]["full"] is True
        assert (await health(client))["refused"]["outbox_full"] >= 3
        assert (
            "</gateway>"
            in (
                await coap.request(Message(code=GET, uri=client.uri(".well-known/core"))).response
            ).payload.decode()
        )
        with running_mosquitto(tmp_path / "mosquitto", port) as broker:
            subscriber = Subscriber(broker, "simpul/test-site/gw-test/batches").start()
            # Delivered batches are pruned, the store falls under budget, readings are taken.
            assert await asyncio.to_thread(
                wait_for, lambda: not gateway.stats()["outbox"]["full"], 20
            )
            response = await client.post("readings", pack("aq-03", at, 50))
            assert response.code.is_successful()
            acked.update(pack_readings("aq-03", at, 50))
            state = tmp_path / "state"
            assert await asyncio.to_thread(wait_for, lambda: all_delivered(state, "mqtt"), 20)
            await asyncio.sleep(0.5)
            subscriber.stop()
        assert gateway.stats()["outbox"]["pruned_batches"] > 0
    finally:
        await gateway.stop()
    result = verify(tmp_path / "state" / "keys" / "gateway.pub", subscriber.payloads(), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert acked <= set(verified_readings(result))


@pytest.mark.slow
async def test_budget_drop_oldest_keeps_accepting_and_counts_every_drop(
    tmp_path: Path, coap: Context
) -> None:
    port = free_tcp_port()  # nobody listens: nothing is ever delivered
    gateway = Gateway(budget_config(tmp_path / "state", "drop_oldest", port))
    await gateway.start()
    client = Client(coap, *gateway.bound_address)
    acked = 0
    try:
        at = 1_700_000_000_000
        for _ in range(400):
            response = await client.post("readings", pack("aq-04", at, 50))
            assert response.code.is_successful(), response
            acked += 50
            at += 1000
        await asyncio.sleep(1.0)
        stats = gateway.stats()
        outbox = stats["outbox"]
        assert outbox["dropped_readings"] > 0
        assert outbox["dropped_batches"] > 0
        assert outbox["used_bytes"] <= 400_000 * 1.2
        assert stats["refused"].get("outbox_full", 0) == 0
        # Every acknowledged reading is either still waiting or counted as dropped.
        waiting = db_value(tmp_path / "state", "SELECT coalesce(sum(readings), 0) FROM batches")
        unbatched = stats["batches"]["waiting"]
        assert waiting + unbatched + outbox["dropped_readings"] == acked
        assert (await health(client))["outbox"]["dropped_readings"] == outbox["dropped_readings"]
    finally:
        await gateway.stop()


@pytest.fixture
def file_batches(tmp_path: Path) -> Iterator[tuple[Path, list[bytes]]]:
    """A gateway process's batch file after some readings: (public key, batches)."""
    yield from _file_batches(tmp_path)


def _file_batches(tmp_path: Path) -> Iterator[tuple[Path, list[bytes]]]:
    from gateway.batches.verify import iter_sequence

    state = tmp_path / "state"
    env = batch_env(
        **{
            "uplinks.batch_file.enabled": "true",
            "batches.max_readings": 20,
            "batches.max_age_ms": 20,
        }
    )
    gateway = GatewayProcess(state, gateway_id=GATEWAY_ID, site=SITE, env=env)
    gateway.start()

    async def load() -> None:
        context = await Context.create_client_context()
        try:
            for i in range(10):
                await post(context, gateway.port, pack("aq-05", 1_700_000_000_000 + i * 20, 20))
        finally:
            await context.shutdown()

    try:
        asyncio.run(load())
        assert wait_for(lambda: all_delivered(state, "batch_file"), 15)
        gateway.stop()
    finally:
        gateway.close()
    with (state / "batches" / "batches.cbor").open("rb") as fp:
        batches = list(iter_sequence(fp))
    yield state / "keys" / "gateway.pub", batches


@pytest.mark.slow
def test_verify_names_tampering_wrong_key_reordering_and_gaps_in_a_gateways_output(
    tmp_path: Path, file_batches: tuple[Path, list[bytes]]
) -> None:
    key, batches = file_batches
    assert len(batches) >= 5
    intact = verify(key, batches, tmp_path, "--report")
    assert intact.returncode == 0, intact.stderr
    assert "OK: every batch verified" in intact.stdout

    tampered = list(batches)
    body = bytearray(tampered[2])
    body[len(body) // 2] ^= 0x01
    tampered[2] = bytes(body)
    result = verify(key, tampered, tmp_path)
    assert result.returncode == 1
    assert "bad_signature" in result.stderr or "malformed" in result.stderr

    other = tmp_path / "other.pub"
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    other.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    result = verify(other, batches, tmp_path)
    assert result.returncode == 1
    assert "unknown_key" in result.stderr

    reordered = [batches[0], batches[2], batches[1], *batches[3:]]
    result = verify(key, reordered, tmp_path)
    assert result.returncode == 1
    assert "reordering: gateway gw-e2e batch 2 arrived after batch 3" in result.stderr

    missing = [batches[0], *batches[3:]]
    result = verify(key, missing, tmp_path)
    assert result.returncode == 1
    assert "gap: gateway gw-e2e batches 2..3 missing" in result.stderr
