"""The gateway through a real aiocoap client over real UDP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from pathlib import Path

import cbor2
import pytest
from aiocoap import GET, PUT, Context, Message

from gateway.daemon import Gateway
from tests.gateway.conftest import Client, HoldCommit, db_rows, gateway_config, senml_pack

CHANGED = "2.04 Changed"


def state_of(gateway: Gateway) -> Path:
    return gateway.config.state_dir


def uplink_lines(gateway: Gateway) -> list[dict[str, object]]:
    lines: list[dict[str, object]] = []
    for path in sorted((state_of(gateway) / "uplink").glob("readings-*.jsonl")):
        complete = path.read_text().rpartition("\n")[0]  # a line being written may be cut
        lines.extend(json.loads(line) for line in complete.splitlines())
    return lines


async def wait_for(predicate: object, timeout_s: float = 5.0) -> None:
    assert callable(predicate)
    for _ in range(int(timeout_s / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_posted_reading_is_in_the_db_and_the_uplink_file(
    gateway: Gateway, client: Client
) -> None:
    response = await client.post_pack(senml_pack("aq-07", names=("pm2_5",)))
    assert str(response.code) == CHANGED
    rows = db_rows(
        state_of(gateway), "SELECT board_id, name, unit, kind, value, time_ms FROM readings"
    )
    assert rows == [("aq-07", "pm2_5", "ug/m3", "v", 12.5, 1_700_000_000_000)]
    await wait_for(lambda: len(uplink_lines(gateway)) == 1)
    (line,) = uplink_lines(gateway)
    assert line == {
        "id": 1,
        "gateway": "gw-test",
        "site": "test-site",
        "board": "aq-07",
        "name": "pm2_5",
        "unit": "ug/m3",
        "kind": "v",
        "value": 12.5,
        "time": "2023-11-14T22:13:20.000Z",
        "time_ms": 1_700_000_000_000,
    }
    # The line is durable before the cursor moves, so the cursor may lag a moment.
    await wait_for(lambda: gateway.stats()["uplinks"]["file"] == {"delivered_id": 1, "backlog": 0})


async def test_senml_json_is_accepted(gateway: Gateway, client: Client) -> None:
    pack = [{"bn": "urn:dev:simpul:b1:", "bt": 1_700_000_000, "n": "t", "u": "Cel", "v": 21.5}]
    response = await client.post("readings", json.dumps(pack).encode(), 110)
    assert str(response.code) == CHANGED
    assert db_rows(state_of(gateway), "SELECT value FROM readings") == [(21.5,)]


async def test_reading_acked_only_after_commit(tmp_path: Path) -> None:
    hold = HoldCommit()
    held, release = hold.held, hold.release
    gateway = Gateway(gateway_config(tmp_path / "state"), before_commit=hold)
    await gateway.start()
    context = await Context.create_client_context()
    try:
        client = Client(context, *gateway.bound_address)
        answer = asyncio.ensure_future(client.post_pack(senml_pack()))
        await asyncio.to_thread(held.wait, 5)
        await asyncio.sleep(0.5)  # ample time to answer, were it allowed to
        assert not answer.done(), "answered before the transaction committed"
        assert db_rows(tmp_path / "state", "SELECT count(*) FROM readings") == [(0,)]
        release.set()
        assert str((await answer).code) == CHANGED
        assert db_rows(tmp_path / "state", "SELECT count(*) FROM readings") == [(1,)]
    finally:
        release.set()
        await context.shutdown()
        await gateway.stop()


async def test_same_batch_twice_is_stored_once(gateway: Gateway, client: Client) -> None:
    pack = senml_pack(names=("a", "b", "c"))
    for _ in range(2):
        assert str((await client.post_pack(pack)).code) == CHANGED
    assert db_rows(state_of(gateway), "SELECT count(*) FROM readings") == [(3,)]
    stats = gateway.stats()
    assert (stats["readings_stored"], stats["duplicates"]) == (3, 3)


async def test_overlapping_batches_store_each_reading_once(
    gateway: Gateway, client: Client
) -> None:
    first = [{-2: "urn:dev:simpul:b1:", 0: "t", 2: i, -3: 1_700_000_000 + i} for i in range(4)]
    second = [{-2: "urn:dev:simpul:b1:", 0: "t", 2: i, -3: 1_700_000_000 + i} for i in range(2, 6)]
    assert str((await client.post_pack(first)).code) == CHANGED
    assert str((await client.post_pack(second)).code) == CHANGED
    rows = db_rows(state_of(gateway), "SELECT value FROM readings ORDER BY time_ms")
    assert rows == [(i,) for i in range(6)]
    await wait_for(lambda: len(uplink_lines(gateway)) == 6)


async def test_sequence_gaps_are_counted_as_missed(gateway: Gateway, client: Client) -> None:
    for start_s, query in [(0, "?s=0&n=2"), (10, "?s=2&n=1"), (20, "?s=7&n=3"), (20, "?s=7&n=3")]:
        pack = senml_pack("b9", start_s=1_700_000_000 + start_s)
        assert str((await client.post_pack(pack, query)).code) == CHANGED
    board = gateway.store.board("b9")
    assert board is not None
    assert (board.last_seq, board.missed) == (9, 4)  # 3..6 never arrived; the replay adds none


async def test_health_report_is_stored_in_the_registry(gateway: Gateway, client: Client) -> None:
    report = {
        "board": "aq-07",
        "uptime_s": 3600,
        "boot_count": 4,
        "reset_cause": "watchdog",
        "heap_free": 81234,
        "rssi": -67,
        "battery": 3.91,
        "fw": "1.2.0",
        "sensor_errors": {"pms5003": {"timeout": 2}},
    }
    assert str((await client.post("health", cbor2.dumps(report), 60)).code) == CHANGED
    board = gateway.store.board("aq-07")
    assert board is not None
    assert board.last_health == report
    assert board.address is not None
    assert board.address.startswith("127.0.0.1:")
    report["uptime_s"] = 3700
    assert str((await client.post("health", json.dumps(report).encode(), 50)).code) == CHANGED
    board = gateway.store.board("aq-07")
    assert board is not None
    assert board.last_health == report
    assert gateway.stats()["boards_seen"] == 1


async def test_well_known_core_lists_the_resources(client: Client) -> None:
    response = await client.context.request(
        Message(code=GET, uri=client.uri(".well-known/core"))
    ).response
    assert str(response.code) == "2.05 Content"
    assert response.opt.content_format == 40
    links = response.payload.decode().split(",")
    assert '</readings>;ct="112 110";rt="simpul.readings"' in links
    assert '</health>;ct="60 50";rt="simpul.health"' in links


BAD_REQUESTS = [
    # (path, payload, content-format, query, expected code, diagnostic contains)
    ("readings", b"\xff\x00", 112, "", "4.00", "not valid CBOR"),
    ("readings", cbor2.dumps({"v": 1}), 112, "", "4.00", "must be an array"),
    ("readings", cbor2.dumps([{0: "t", 2: 1}]), 112, "", "4.00", "urn:dev:simpul"),
    ("readings", b"[{", 110, "", "4.00", "not valid JSON"),
    ("readings", cbor2.dumps(senml_pack()), 60, "", "4.15", "112"),
    ("readings", cbor2.dumps(senml_pack()), None, "", "4.15", "112"),
    ("readings", cbor2.dumps(senml_pack()), 112, "?s=x&n=1", "4.00", "query s"),
    ("readings", cbor2.dumps(senml_pack()), 112, "?s=1", "4.00", "go together"),
    ("readings", b"x" * 20_000, 112, "", "4.13", "exceeds 16384"),
    ("health", cbor2.dumps({"uptime_s": 1}), 60, "", "4.00", "board"),
    ("health", cbor2.dumps(["board"]), 60, "", "4.00", "must be a map"),
    ("nowhere", b"", 112, "", "4.04", "no resource at /nowhere"),
]


@pytest.mark.parametrize(
    ("path", "payload", "content_format", "query", "code", "diagnostic"), BAD_REQUESTS
)
async def test_bad_request_gets_its_code_and_leaves_the_store_intact(
    gateway: Gateway,
    client: Client,
    path: str,
    payload: bytes,
    content_format: int | None,
    query: str,
    code: str,
    diagnostic: str,
) -> None:
    assert str((await client.post_pack(senml_pack("good"))).code) == CHANGED
    response = await client.post(path, payload, content_format, query)
    assert str(response.code).startswith(code)
    assert diagnostic in response.payload.decode()
    if code == "4.13":
        assert response.opt.size1 == 16384
    state = state_of(gateway)
    assert db_rows(state, "PRAGMA integrity_check") == [("ok",)]
    assert db_rows(state, "SELECT count(*) FROM readings") == [(1,)]
    assert sum(gateway.stats()["refused"].values()) == 1
    # ...and the server still serves.
    later = await client.post_pack(senml_pack("good", start_s=1_700_000_001))
    assert str(later.code) == CHANGED


async def test_wrong_method_gets_4_05_with_a_diagnostic(client: Client) -> None:
    response = await client.context.request(
        Message(code=PUT, uri=client.uri("readings"), payload=b"")
    ).response
    assert str(response.code) == "4.05 Method Not Allowed"
    assert response.payload == b"PUT not allowed on /readings; use POST"


async def test_one_bad_record_refuses_the_whole_batch(gateway: Gateway, client: Client) -> None:
    pack = senml_pack(names=("a", "b"))
    pack.append({0: "c", 2: "not a number"})
    response = await client.post_pack(pack)
    assert str(response.code).startswith("4.00")
    assert b"record 2" in response.payload
    assert db_rows(state_of(gateway), "SELECT count(*) FROM readings") == [(0,)]


async def test_single_datagram_over_the_limit_gets_4_13_with_size1(tmp_path: Path) -> None:
    gateway = Gateway(gateway_config(tmp_path / "state", **{"limits.max_request_bytes": 64}))
    await gateway.start()
    context = await Context.create_client_context()
    try:
        client = Client(context, *gateway.bound_address)
        response = await client.post_pack(senml_pack(names=("a", "b", "c", "d")))
        assert str(response.code) == "4.13 Request Entity Too Large"
        assert response.opt.size1 == 64
    finally:
        await context.shutdown()
        await gateway.stop()


def raw_exchange(port: int, datagram: bytes, timeout_s: float = 2.0) -> bytes | None:
    """Send one datagram; return the first answer, or None if none comes."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        sock.sendto(datagram, ("127.0.0.1", port))
        try:
            return sock.recv(2048)
        except TimeoutError:
            return None


def coap_post_readings(payload: bytes, message_id: int = 0x1234) -> bytes:
    # CON POST, token "tk", Uri-Path "readings", Content-Format 112, payload.
    header = struct.pack("!BBH", 0x42, 0x02, message_id) + b"tk"
    options = bytes([0xB8]) + b"readings" + bytes([0x11, 112])
    return header + options + b"\xff" + payload


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        b"\x00",
        b"garbage that is not CoAP at all",
        b"\x42\x02\x12",  # header cut short
        coap_post_readings(b"")[:12],  # options cut short
        b"\x4f\x02\x12\x34",  # token length 15 (reserved)
    ],
)
async def test_malformed_datagrams_do_not_disturb_the_server(
    gateway: Gateway, client: Client, datagram: bytes
) -> None:
    _, port = gateway.bound_address
    await asyncio.to_thread(raw_exchange, port, datagram, 0.3)
    assert str((await client.post_pack(senml_pack())).code) == CHANGED
    assert db_rows(state_of(gateway), "PRAGMA integrity_check") == [("ok",)]


async def test_raw_post_with_garbage_payload_gets_piggybacked_4_00(gateway: Gateway) -> None:
    _, port = gateway.bound_address
    answer = await asyncio.to_thread(raw_exchange, port, coap_post_readings(b"\x9f\x01"))
    assert answer is not None
    assert answer[0] >> 4 & 3 == 2  # ACK
    assert answer[1] == 0x80  # 4.00
    assert answer[2:4] == b"\x12\x34"
    assert b"not valid CBOR" in answer.split(b"\xff", 1)[1]


async def test_stop_commits_what_was_accepted(tmp_path: Path) -> None:
    gateway = Gateway(gateway_config(tmp_path / "state"))
    await gateway.start()
    context = await Context.create_client_context()
    client = Client(context, *gateway.bound_address)
    answers = await asyncio.gather(*(client.post_pack(senml_pack(f"b{i}")) for i in range(20)))
    await gateway.stop()
    await context.shutdown()
    assert all(str(a.code) == CHANGED for a in answers)
    assert db_rows(tmp_path / "state", "SELECT count(*) FROM readings") == [(20,)]
