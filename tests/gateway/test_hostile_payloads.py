"""Hostile payloads (issue 8, findings 1, 2 and 6): refused with 4.00, and the writer lives on.

Each finding is checked twice: at the decoder, and through a live in-process gateway over real
UDP with the issue's own bytes, where the answer must be 4.00, the writer process must not have
been restarted, and a good reading sent right after must be stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sqlite3
import struct
from collections.abc import Iterator
from pathlib import Path

import cbor2
import pytest

from gateway.codec.senml import decode_senml_cbor, decode_senml_json
from gateway.config import LimitsConfig
from gateway.daemon import Gateway
from gateway.errors import BadFrame, BadPayload, DecodeFault, StoreUnavailable
from gateway.intake import writer
from gateway.intake.requests import SENML_CBOR, SENML_JSON, decode_health, decode_readings
from gateway.store.schema import prepare
from gateway.store.writer import StoreWriter
from tests.gateway.conftest import Client, db_rows, senml_pack

NOW_MS = 1_800_000_000_000

#: Finding 1, the whole datagram: CON POST /readings, Content-Format 112, and a SenML-CBOR
#: pack whose bt is 1e308 s (anything from about 1.8e305 s on): bt * 1000 overflowed, and
#: the OverflowError killed the writer process.
FINDING_1 = bytes.fromhex(
    "4102010201b872656164696e67731170ff81a4217175726e3a6465763a73696d70756c3a783a22fb7fe1cc"
    "f385ebc8a00061740201"
)
#: Finding 2: a lone surrogate in a SenML-JSON string (it got 5.03 "store could not commit").
SURROGATE_JSON = b'[{"bn":"urn:dev:simpul:x:","n":"s","vs":"\\ud800"}]'
#: Finding 6: two bn in one record (the second won, landing the reading on board y) ...
TWO_BASE_NAMES = (
    bytes.fromhex("81a4")
    + b"\x21\x71urn:dev:simpul:x:"
    + b"\x21\x71urn:dev:simpul:y:"
    + bytes.fromhex("0061740201")  # n "t", v 1
)
#: ... and a vd that is not base64url (it was stored as empty bytes).
BAD_VD_JSON = b'[{"bn":"urn:dev:simpul:x:","n":"raw","vd":"!!!"}]'


def payload_of(datagram: bytes) -> bytes:
    return datagram.split(b"\xff", 1)[1]


def coap_post(path: str, payload: bytes, content_format: int, message_id: int) -> bytes:
    """A CON POST with a one-byte token, as the issue's datagram is built."""
    head = struct.pack("!BBHB", 0x41, 0x02, message_id, 0x01)
    return (
        head
        + bytes([0xB0 | len(path)])
        + path.encode()
        + bytes([0x11, content_format])
        + (b"\xff" + payload)
    )


# -- at the decoder ------------------------------------------------------------------------


def test_finding_1_a_huge_time_is_refused_at_decode() -> None:
    assert FINDING_1[1] == 0x02
    assert payload_of(FINDING_1)[:1] == b"\x81"
    with pytest.raises(BadPayload, match="time bt 1e\\+308 s is out of range"):
        decode_senml_cbor(payload_of(FINDING_1), now_ms=NOW_MS, max_records=10)


def test_finding_2_a_lone_surrogate_is_refused_at_decode() -> None:
    with pytest.raises(BadPayload, match="lone surrogate"):
        decode_senml_json(SURROGATE_JSON, now_ms=NOW_MS, max_records=10)
    with pytest.raises(BadPayload, match="not UTF-8"):  # the same, encoded rather than escaped
        decode_senml_json(
            SURROGATE_JSON.replace(b"\\ud800", b"\xed\xa0\x80"), now_ms=1, max_records=1
        )


def test_finding_6_two_base_names_and_a_bad_vd_are_refused_at_decode() -> None:
    with pytest.raises(BadPayload, match="duplicate map key -2"):
        decode_senml_cbor(TWO_BASE_NAMES, now_ms=NOW_MS, max_records=10)
    with pytest.raises(BadPayload, match="vd is not base64url"):
        decode_senml_json(BAD_VD_JSON, now_ms=NOW_MS, max_records=10)


@pytest.mark.parametrize(
    ("payload", "content_format", "message"),
    [
        (b'{"board":"b1","board":"b2"}', 50, "duplicate name 'board'"),
        (b'{"board":"b1","fw":"\\udc00"}', 50, "lone surrogate"),
        (b'{"board":"b1","rssi":NaN}', 50, "NaN is not a number"),
        (b'{"board":"b1","uptime":1e999}', 50, "not a finite float"),
        (b'{"board":"b1","boots":100000000000000000000}', 50, "64 signed bits"),
        (b'{"board":"b1","x":' + b"[" * 9 + b"]" * 9 + b"}", 50, "nested too deeply"),
        (b"\xef\xbb\xbf" + b'{"board":"b1"}', 50, "not valid JSON"),  # a BOM
        (cbor2.dumps({"board": "b1", 1: 2}), 60, "key 1 is not text"),
        (cbor2.dumps({"board": "b1", "raw": b"\x00"}), 60, "byte string cannot be stored"),
        (cbor2.dumps({"board": "b1", "t": float("inf")}), 60, "not finite"),
        (bytes.fromhex("a2 65626f617264 626231 65626f617264 626232"), 60, "duplicate map key"),
        (cbor2.dumps({"board": "b1", "seen": cbor2.CBORTag(1, 0)}), 60, "tag 1 is not allowed"),
        (cbor2.dumps({"board": "b1", "x": list(range(5000))}), 60, "more data items"),
        (cbor2.dumps(["board", "b1"]), 60, "must be a map"),
    ],
)
def test_health_reports_are_decoded_as_strictly_as_readings(
    payload: bytes, content_format: int, message: str
) -> None:
    with pytest.raises(BadPayload, match=message):
        decode_health(payload, content_format)


def test_a_good_health_report_decodes_in_cbor_and_json_alike() -> None:
    report = {"board": "b1", "uptime_s": 12, "rssi": -61.5, "sensors": {"pm": [0, 1]}, "ok": True}
    assert decode_health(cbor2.dumps(report), 60) == ("b1", report)
    assert decode_health(json.dumps(report).encode(), 50) == ("b1", report)


# -- the writer: a request's failure is that request's --------------------------------------


def _request(request_id: int, payload: bytes, content_format: int = SENML_CBOR) -> writer.Request:
    return writer.Request(
        request_id, writer.KIND_READINGS, content_format, NOW_MS, None, None, payload
    )


def _replies(data: bytes) -> dict[int, writer.Reply]:
    replies, used = writer.decode_replies(bytearray(data))
    assert used == len(data)
    return {reply.request_id: reply for reply in replies}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StoreWriter]:
    prepare(tmp_path / "gateway.db")
    store = StoreWriter(tmp_path / "gateway.db", synchronous="OFF")
    try:
        yield store
    finally:
        store.close()


def test_bad_requests_in_a_group_are_refused_and_the_good_ones_committed(
    store: StoreWriter,
) -> None:
    good = cbor2.dumps(senml_pack("good"))
    group = [
        _request(1, payload_of(FINDING_1)),
        _request(2, good),
        _request(3, SURROGATE_JSON, SENML_JSON),
        _request(4, TWO_BASE_NAMES),
        _request(5, BAD_VD_JSON, SENML_JSON),
    ]
    replies = _replies(writer._commit(store, group, LimitsConfig(), writer.FaultLog()))
    assert replies[2].error is None
    assert replies[2].stored == 1
    for bad in (1, 3, 4, 5):
        error = replies[bad].error
        assert isinstance(error, BadPayload), (bad, error)
        assert error.code == 0x80


def test_an_unforeseen_decoder_failure_is_that_requests_4_00_and_logged_once(
    store: StoreWriter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = decode_readings

    def buggy(payload: bytes, *args: object, **kwargs: object) -> object:
        if payload == b"boom":
            raise ZeroDivisionError("a decoder bug")
        return real(payload, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(writer, "decode_readings", buggy)
    clock = [0.0]
    faults = writer.FaultLog(interval_s=60, clock=lambda: clock[0])
    good = cbor2.dumps(senml_pack("good"))
    with caplog.at_level(logging.WARNING, logger="gateway.intake.writer"):
        for round_ in range(5):
            group = [_request(1, b"boom"), _request(2, cbor2.dumps(senml_pack(f"g{round_}")))]
            replies = _replies(writer._commit(store, group, LimitsConfig(), faults))
            assert isinstance(replies[1].error, DecodeFault)
            assert replies[1].error.code == 0x80  # 4.00: the same bytes would fail again
            assert replies[2].error is None
            assert replies[2].stored == 1
        clock[0] = 61.0
        writer._commit(store, [_request(1, b"boom"), _request(2, good)], LimitsConfig(), faults)
    assert sum(faults.counts.values()) == 6
    first, summary = caplog.records
    assert first.exc_info is not None
    assert "ZeroDivisionError" in first.getMessage()
    assert summary.exc_info is None
    assert "5 x ZeroDivisionError" in summary.getMessage()


def test_an_unknown_request_kind_is_refused_not_taken_for_readings(store: StoreWriter) -> None:
    odd = writer.Request(7, 9, SENML_CBOR, NOW_MS, None, None, cbor2.dumps(senml_pack()))
    replies = _replies(writer._commit(store, [odd], LimitsConfig(), writer.FaultLog()))
    assert isinstance(replies[7].error, BadFrame)


def test_every_value_a_decoder_returns_is_one_sqlite_stores() -> None:
    # Text with a surrogate and integers beyond 64 bits are what SQLite cannot bind.
    db = sqlite3.connect(":memory:")
    with pytest.raises(UnicodeEncodeError):
        db.execute("SELECT ?", ("\ud800",))
    with pytest.raises(OverflowError):
        db.execute("SELECT ?", (2**63,))
    for payload in (
        b'[{"bn":"urn:dev:simpul:x:","n":"s","vs":"\\ud800"}]',
        b'[{"bn":"urn:dev:simpul:x:","n":"v","v":9223372036854775808}]',
        b'[{"bn":"urn:dev:simpul:x:","n":"v","v":9223372036854775807,"bv":1}]',
    ):
        with pytest.raises(BadPayload):
            decode_senml_json(payload, now_ms=NOW_MS, max_records=10)


def test_reply_messages_survive_any_text() -> None:
    frame = writer.encode_reply(1, BadPayload("odd \ud800 text " + "\u00fc" * 300))
    (reply,) = _replies(frame).values()
    assert isinstance(reply.error, BadPayload)
    assert reply.error.message.startswith("odd \\ud800")


def test_a_request_frame_that_no_gateway_wrote_is_refused_not_misread() -> None:
    frame = bytearray(
        writer.encode_request(1, 1, b"x", content_format=112, received_ms=1, seq=None, address="a")
    )
    frame[0:4] = (3).to_bytes(4, "little")  # shorter than its own head
    with pytest.raises(BadFrame):
        writer.decode_requests(frame)


# -- through a live gateway over real UDP --------------------------------------------------


async def exchange(gateway: Gateway, datagram: bytes) -> bytes:
    """Send one datagram from a fresh socket; its answer (within 5 s)."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(("127.0.0.1", gateway.bound_address[1]))
        sock.send(datagram)
        return await asyncio.wait_for(loop.sock_recv(sock, 2048), 5.0)


def readings(gateway: Gateway) -> list[tuple[str, str]]:
    return [
        (str(board), str(name))
        for board, name in db_rows(
            gateway.config.state_dir, "SELECT board_id, name FROM readings ORDER BY id"
        )
    ]


@pytest.mark.parametrize(
    ("datagram", "diagnostic"),
    [
        (FINDING_1, b"out of range"),
        (coap_post("readings", SURROGATE_JSON, SENML_JSON, 0x0103), b"lone surrogate"),
        (coap_post("readings", TWO_BASE_NAMES, SENML_CBOR, 0x0104), b"duplicate map key"),
        (coap_post("readings", BAD_VD_JSON, SENML_JSON, 0x0105), b"vd is not base64url"),
        (coap_post("health", b'{"board":"x","board":"y"}', 50, 0x0106), b"duplicate name"),
        (coap_post("health", b'{"board":"x","v":"\\ud800"}', 50, 0x0107), b"lone surrogate"),
    ],
    ids=[
        "finding-1-huge-time",
        "finding-2-surrogate",
        "finding-6-two-bn",
        "finding-6-vd",
        "health-two-boards",
        "health-surrogate",
    ],
)
async def test_hostile_payload_gets_4_00_and_the_writer_serves_on(
    gateway: Gateway, client: Client, datagram: bytes, diagnostic: bytes
) -> None:
    answer = await exchange(gateway, datagram)
    assert answer[0] >> 4 == 0x6  # version 1, ACK: piggybacked
    assert answer[1] == 0x80, f"answer code {answer[1] >> 5}.{answer[1] & 31:02d}"  # 4.00
    assert answer[2:4] == datagram[2:4]
    assert diagnostic in answer.split(b"\xff", 1)[1]
    good = await client.post_pack(senml_pack("good"))
    assert str(good.code) == "2.04 Changed"
    assert readings(gateway) == [("good", "pm2_5")]  # nothing from the hostile request
    assert gateway.writer.restarts == 0


async def test_finding_1_repeated_never_stops_the_store(gateway: Gateway, client: Client) -> None:
    # The issue: one such datagram every 0.5 s held a good board to 1 success in 22.
    for number in range(10):
        datagram = FINDING_1[:2] + struct.pack("!H", 0x0200 + number) + FINDING_1[4:]
        assert (await exchange(gateway, datagram))[1] == 0x80
        good = await client.post_pack(senml_pack("good", start_s=1_700_000_000 + number))
        assert str(good.code) == "2.04 Changed"
    assert len(readings(gateway)) == 10
    assert gateway.writer.restarts == 0
    assert gateway.stats()["refused"].get(BadPayload.reason) == 10
    assert StoreUnavailable.reason not in gateway.stats()["refused"]
