"""Every decoder the gateway runs on bytes from outside, under hypothesis.

For any input (arbitrary bytes, and mutations of valid encodings: bit flips, truncations,
insertions, deletions, repeated slices, repeated map keys) each decoder either returns a
well-typed result or raises its documented error type: nothing else, and within a bounded
time (inputs are bounded, and a SIGALRM turns a hang into a failure). Valid inputs round-trip.

Reproducible in CI: examples are derandomized (a fixed seed per test) and no example
database is read or written. Each test takes well under a second.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import operator
import signal
import sqlite3
import string
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, TypeVar

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.batches import format as batch_format
from gateway.codec import cbor, strict_json
from gateway.codec.senml import (
    EARLIEST_TIME_MS,
    LATEST_TIME_MS,
    Reading,
    decode_senml_cbor,
    decode_senml_json,
    is_board_id,
)
from gateway.errors import BadBatch, BadFrame, BadPayload, BadQuery, GatewayError
from gateway.intake import writer
from gateway.intake.requests import decode_health, parse_sequence_query
from gateway.store.writer import SequenceRange, SubmitResult
from tests.batches.conftest import RFC8032_SECRET, Row

T = TypeVar("T")

#: For arbitrary bytes, and the base of every test here: fixed seeds, no example database,
#: no per-example deadline (a loaded CI machine must not fail a test for being slow; the
#: alarm in :func:`bounded` catches hangs instead).
PROPERTIES = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: For inputs built from generated structures (packs, batches, frames): dearer to generate.
STRUCTURED = settings(PROPERTIES, max_examples=100)
#: Longest arbitrary input; the gateway refuses requests over 16 KiB before decoding anyway.
MAX_INPUT = 512
#: Seconds any one decode may take before the test fails as a hang.
HANG_S = 2.0
NOW_MS = 1_800_000_000_000
MAX_RECORDS = 64
INT64 = st.integers(-(2**63), 2**63 - 1)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
KEY = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)


@contextlib.contextmanager
def bounded(seconds: float = HANG_S) -> Iterator[None]:
    """Fail, rather than hang, if the block runs longer than ``seconds``."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise AssertionError(f"no answer within {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(error: type[GatewayError], decode: Callable[[], T]) -> T | GatewayError:
    """The decoder's result, or the documented error it raised; anything else propagates."""
    with bounded():
        try:
            return decode()
        except error as exc:
            refused = exc
    assert type(refused).code == error.code
    message = str(refused)
    assert message, "an error must say what is wrong"
    assert len(message) <= 300, f"a diagnostic of {len(message)} characters"
    return refused


# -- inputs -------------------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid encoding, then one to four byte-level mutations."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "repeat", "byte"]))
        if op == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "repeat":
            length = draw(st.integers(1, 16))
            data[at:at] = data[at : at + length]
        elif op == "byte" and at < len(data):
            # Bytes that mean much in CBOR: heads of big lengths, breaks, tags, floats.
            data[at] = draw(
                st.sampled_from([0x1B, 0x3B, 0x5F, 0x7F, 0x9F, 0xBF, 0xC2, 0xF7, 0xFB, 0xFF])
            )
    return bytes(data[: MAX_INPUT * 4])


def plain_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Values inside simpul's CBOR profile: what :func:`cbor.loads` may return (no tags)."""
    scalars = (
        st.none() | st.booleans() | INT64 | FINITE | st.text(max_size=20) | st.binary(max_size=20)
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=5)
            | st.dictionaries(INT64 | st.text(max_size=8), inner, max_size=5)
        ),
        max_leaves=max_leaves,
    )


def same(a: object, b: object) -> bool:
    """Equal with the same types all the way down (True is not 1, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, cbor.Tagged) and isinstance(b, cbor.Tagged):
        return a.tag == b.tag and same(a.value, b.value)
    return a == b


def check_profile(value: object, tags: frozenset[int] = frozenset(), depth: int = 0) -> None:
    """``value`` is something :func:`cbor.loads` may return, all the way down."""
    assert depth <= cbor.MAX_DEPTH + 1
    if type(value) is int:
        assert -(2**63) <= value < 2**63
    elif type(value) is float:
        assert math.isfinite(value)
    elif type(value) is str:
        value.encode("utf-8")  # no lone surrogates
    elif type(value) is list:
        for item in value:
            check_profile(item, tags, depth + 1)
    elif type(value) is dict:
        for key, item in value.items():
            assert type(key) in (int, str)
            check_profile(key, tags, depth + 1)
            check_profile(item, tags, depth + 1)
    elif type(value) is cbor.Tagged:
        assert value.tag in tags
        check_profile(value.value, tags, depth + 1)
    else:
        assert value is None or type(value) in (bool, bytes), type(value)


def with_repeated_key(value: dict[Any, Any], key: Any, other: Any) -> bytes:
    """``value`` as a CBOR map with ``key`` written a second time (cbor2 cannot write it)."""
    pairs = [*value.items(), (key, other)]
    head = cbor2.dumps([None] * len(pairs))[: -len(pairs)]  # an array head of that length ...
    head = bytes([head[0] + 0x20]) + head[1:]  # ... made a map head
    return head + b"".join(cbor2.dumps(k) + cbor2.dumps(v) for k, v in pairs)


# -- the strict CBOR decoder ----------------------------------------------------------------


@PROPERTIES
@given(st.binary(max_size=MAX_INPUT))
def test_cbor_any_bytes_decode_within_the_profile_or_are_refused(data: bytes) -> None:
    result = outcome(BadPayload, lambda: cbor.loads(data))
    if not isinstance(result, BadPayload):
        check_profile(result)
        assert same(cbor2.loads(data), result)  # what we accept, cbor2 reads the same way


@STRUCTURED
@given(mutated(plain_values().map(cbor2.dumps)), st.sets(st.integers(0, 40), max_size=3))
def test_cbor_mutations_decode_within_the_profile_or_are_refused(
    data: bytes, tags: set[int]
) -> None:
    result = outcome(BadPayload, lambda: cbor.loads(data, tags=tags))
    if not isinstance(result, BadPayload):
        check_profile(result, frozenset(tags))


@STRUCTURED
@given(plain_values(max_leaves=40), st.booleans())
def test_cbor_values_in_the_profile_round_trip_and_agree_with_cbor2(
    value: Any, canonical: bool
) -> None:
    encoded = cbor2.dumps(value, canonical=canonical)
    assert same(cbor.loads(encoded), value)
    assert same(cbor.loads(encoded), cbor2.loads(encoded))


@STRUCTURED
@given(
    st.dictionaries(INT64 | st.text(max_size=8), plain_values(5), min_size=1, max_size=5),
    st.data(),
)
def test_cbor_a_repeated_map_key_is_always_refused(
    value: dict[Any, Any], data: st.DataObject
) -> None:
    key = data.draw(st.sampled_from(sorted(value, key=repr)))
    other = data.draw(plain_values(5))
    with pytest.raises(BadPayload, match="duplicate map key"):
        cbor.loads(with_repeated_key(value, key, other))


# -- SenML-CBOR and SenML-JSON --------------------------------------------------------------

_ALNUM = string.ascii_letters + string.digits


def _word(rest: str, max_size: int = 15) -> st.SearchStrategy[str]:
    """A letter or digit, then up to ``max_size`` of ``rest`` (RFC 8428 §4.5.1 names)."""
    return st.builds(operator.add, st.sampled_from(_ALNUM), st.text(rest, max_size=max_size))


BOARD = _word(_ALNUM + "._-")
NAME = _word(_ALNUM + "-:./_")
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "v": INT64 | FINITE,
    "s": INT64 | FINITE,
    "vs": st.text(max_size=20),
    "vb": st.booleans(),
    "vd": st.binary(max_size=20),
}


@st.composite
def readings(draw: st.DrawFn) -> list[Reading]:
    """Readings as boards send them: absolute times in range, every kind of value."""
    result = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(sorted(VALUES)))
        result.append(
            Reading(
                draw(BOARD),
                draw(NAME),
                draw(st.none() | st.text(min_size=1, max_size=8)),
                kind,  # type: ignore[arg-type]
                draw(VALUES[kind]),
                draw(st.integers(EARLIEST_TIME_MS, LATEST_TIME_MS - 1)),
            )
        )
    return result


_CBOR_LABEL = {
    "bn": -2,
    "bt": -3,
    "n": 0,
    "u": 1,
    "v": 2,
    "vs": 3,
    "vb": 4,
    "s": 5,
    "t": 6,
    "vd": 8,
}


def pack_of(rows: list[Reading], *, json_form: bool) -> bytes:
    """A SenML pack carrying ``rows``: base name and base time on every record."""
    records = []
    for r in rows:
        record: dict[str, Any] = {
            "bn": f"urn:dev:simpul:{r.board_id}:",
            "bt": r.time_ms // 1000,
            "n": r.name,
            r.kind: r.value,
            "t": r.time_ms % 1000 / 1000,
        }
        if r.unit is not None:
            record["u"] = r.unit
        if json_form and isinstance(r.value, bytes):
            record["vd"] = base64.urlsafe_b64encode(r.value).rstrip(b"=").decode()
        records.append(record)
    if json_form:
        return json.dumps(records).encode()
    return cbor2.dumps([{_CBOR_LABEL[k]: v for k, v in rec.items()} for rec in records])


_STORE = sqlite3.connect(":memory:")
_STORE.execute("CREATE TABLE r (board_id, name, unit, kind, value, time_ms)")


def check_readings(result: list[Reading]) -> None:
    """Readings of the promised types that SQLite can store as they are."""
    assert type(result) is list
    assert 1 <= len(result) <= MAX_RECORDS
    for r in result:
        assert type(r) is Reading
        assert is_board_id(r.board_id)
        assert type(r.name) is str
        assert r.unit is None or type(r.unit) is str
        assert type(r.time_ms) is int
        assert 0 <= r.time_ms <= 253_402_300_799_000
        kinds = {"v": (int, float), "s": (int, float), "vs": (str,), "vb": (bool,), "vd": (bytes,)}
        assert type(r.value) in kinds[r.kind]
        if type(r.value) is float:
            assert math.isfinite(r.value)
    _STORE.executemany("INSERT INTO r VALUES (?, ?, ?, ?, ?, ?)", result)  # binds, or raises
    _STORE.execute("DELETE FROM r")


def senml(decode: Callable[..., list[Reading]], data: bytes) -> list[Reading] | GatewayError:
    result = outcome(BadPayload, lambda: decode(data, now_ms=NOW_MS, max_records=MAX_RECORDS))
    if not isinstance(result, GatewayError):
        check_readings(result)
    return result


@PROPERTIES
@given(st.binary(max_size=MAX_INPUT))
def test_senml_cbor_any_bytes_give_storable_readings_or_are_refused(data: bytes) -> None:
    senml(decode_senml_cbor, data)


@STRUCTURED
@given(mutated(readings().map(lambda rows: pack_of(rows, json_form=False))))
def test_senml_cbor_mutated_packs_give_storable_readings_or_are_refused(data: bytes) -> None:
    senml(decode_senml_cbor, data)


@STRUCTURED
@given(readings())
def test_senml_cbor_packs_round_trip(rows: list[Reading]) -> None:
    decoded = decode_senml_cbor(pack_of(rows, json_form=False), now_ms=NOW_MS, max_records=64)
    assert all(map(same, map(tuple, decoded), map(tuple, rows)))


@STRUCTURED
@given(readings(), st.data())
def test_senml_cbor_a_field_given_twice_is_always_refused(
    rows: list[Reading], data: st.DataObject
) -> None:
    pack = cbor2.loads(pack_of(rows, json_form=False))
    index = data.draw(st.integers(0, len(pack) - 1))
    label = data.draw(st.sampled_from(sorted(pack[index])))
    encoded_record = with_repeated_key(pack[index], label, data.draw(plain_values(3)))
    encoded = cbor2.dumps(pack)
    head = cbor2.dumps(pack[:0] + [None] * len(pack))[: -len(pack)]
    records = [cbor2.dumps(r) for r in pack]
    records[index] = encoded_record
    encoded = head + b"".join(records)
    with pytest.raises(BadPayload, match="duplicate map key"):
        decode_senml_cbor(encoded, now_ms=NOW_MS, max_records=MAX_RECORDS)


JSON_TEXT = st.text(alphabet=string.printable + '\\"{}[]:,ü\u2028\ud7ff', max_size=MAX_INPUT)


@PROPERTIES
@given(st.binary(max_size=MAX_INPUT) | JSON_TEXT.map(str.encode))
def test_senml_json_any_bytes_give_storable_readings_or_are_refused(data: bytes) -> None:
    senml(decode_senml_json, data)


@STRUCTURED
@given(mutated(readings().map(lambda rows: pack_of(rows, json_form=True))))
def test_senml_json_mutated_packs_give_storable_readings_or_are_refused(data: bytes) -> None:
    senml(decode_senml_json, data)


@STRUCTURED
@given(readings())
def test_senml_json_packs_round_trip(rows: list[Reading]) -> None:
    decoded = decode_senml_json(pack_of(rows, json_form=True), now_ms=NOW_MS, max_records=64)
    assert all(map(same, map(tuple, decoded), map(tuple, rows)))


@STRUCTURED
@given(readings(), st.data())
def test_senml_json_a_field_given_twice_or_a_lone_surrogate_is_always_refused(
    rows: list[Reading], data: st.DataObject
) -> None:
    text = pack_of(rows, json_form=True).decode()
    if data.draw(st.booleans()):
        twice = data.draw(st.sampled_from(["bn", "bt", "n", "t", "v", "vs", "u", "x"]))
        text = text.replace('{"bn"', f'{{"{twice}": 1, "{twice}": 2, "bn"', 1)
        expected = "duplicate name"
    else:
        surrogate = data.draw(st.integers(0xD800, 0xDFFF))
        text = text.replace('"n": "', f'"n": "\\u{surrogate:04x}', 1)
        expected = "lone surrogate"
    with pytest.raises(BadPayload, match=expected):
        decode_senml_json(text.encode(), now_ms=NOW_MS, max_records=MAX_RECORDS)


# -- health reports -------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | INT64 | FINITE | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
HEALTH = st.builds(
    lambda board, extra: {**extra, "board": board},
    BOARD,
    st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=6),
)


def health(data: bytes, content_format: int) -> None:
    result = outcome(BadPayload, lambda: decode_health(data, content_format))
    if not isinstance(result, GatewayError):
        board_id, report = result
        assert is_board_id(board_id)
        assert report["board"] == board_id
        # What the registry stores: strict JSON, UTF-8, that reads back the same.
        stored = json.dumps(report, allow_nan=False).encode("utf-8")
        assert same(json.loads(stored), report)


@PROPERTIES
@given(st.binary(max_size=MAX_INPUT), st.sampled_from([50, 60]))
def test_health_any_bytes_give_a_storable_report_or_are_refused(
    data: bytes, content_format: int
) -> None:
    health(data, content_format)


@STRUCTURED
@given(HEALTH, st.data())
def test_health_mutated_reports_give_a_storable_report_or_are_refused(
    report: dict[str, Any], data: st.DataObject
) -> None:
    as_json = data.draw(st.booleans())
    encoded = json.dumps(report).encode() if as_json else cbor2.dumps(report)
    health(data.draw(mutated(st.just(encoded))), 50 if as_json else 60)


@STRUCTURED
@given(HEALTH)
def test_health_reports_round_trip_in_cbor_and_json(report: dict[str, Any]) -> None:
    for encoded, content_format in ((cbor2.dumps(report), 60), (json.dumps(report).encode(), 50)):
        board_id, decoded = decode_health(encoded, content_format)
        assert board_id == report["board"]
        assert same(decoded, report)


@PROPERTIES
@given(st.binary(max_size=MAX_INPUT) | JSON_TEXT.map(str.encode))
def test_strict_json_any_bytes_decode_or_are_refused(data: bytes) -> None:
    result = outcome(BadPayload, lambda: strict_json.loads(data))
    if not isinstance(result, BadPayload):
        json.dumps(result, allow_nan=False).encode("utf-8")  # finite, Unicode throughout


# -- signed batches -------------------------------------------------------------------------


@st.composite
def batch_rows(draw: st.DrawFn) -> list[Row]:
    rows = []
    for index, r in enumerate(draw(readings()), start=1):
        rows.append(Row(index, r.board_id, r.name, r.unit, r.kind, r.value, r.time_ms, r.time_ms))
    return rows


def signed(rows: list[Row]) -> bytes:
    encoded, _ = batch_format.build(
        KEY, batch_format.ChainState(), rows, NOW_MS, gateway="gw-1", site="kec-a"
    )
    return encoded


def check_batch(data: bytes) -> None:
    result = outcome(BadBatch, lambda: batch_format.decode(data))
    if not isinstance(result, GatewayError):
        assert result.encoded == data
        assert result.seq >= 1
        assert 0 <= result.first_id <= result.last_id
        check_readings(list(result.readings[:MAX_RECORDS]) or [Reading("b", "n", None, "v", 1, 0)])


@PROPERTIES
@given(st.binary(max_size=MAX_INPUT))
def test_batch_any_bytes_decode_or_are_refused(data: bytes) -> None:
    check_batch(data)
    stored = outcome(BadBatch, lambda: batch_format.ChainState.decode(data))
    if not isinstance(stored, GatewayError):
        assert type(stored.seq) is int


@STRUCTURED
@given(mutated(batch_rows().map(signed)))
def test_batch_mutations_decode_or_are_refused(data: bytes) -> None:
    check_batch(data)


@STRUCTURED
@given(batch_rows())
def test_batches_round_trip(rows: list[Row]) -> None:
    batch = batch_format.decode(signed(rows))
    batch_format.verify_signature(batch, KEY.public_key())
    expected = [Reading(r.board_id, r.name, r.unit, r.kind, r.value, r.time_ms) for r in rows]  # type: ignore[arg-type]
    assert all(map(same, map(tuple, batch.readings), map(tuple, expected)))


# -- sequence queries -----------------------------------------------------------------------

QUERY = (
    st.text(max_size=30)
    | st.builds(lambda k, v: f"{k}={v}", st.sampled_from("sn"), st.integers(-5, 2**60))
    | st.builds(
        lambda k, v: f"{k}={v}", st.sampled_from("sn"), st.text("0123456789٣²", max_size=40)
    )
)


@PROPERTIES
@given(st.lists(QUERY, max_size=6))
def test_sequence_queries_parse_to_a_range_or_are_refused(queries: list[str]) -> None:
    result = outcome(BadQuery, lambda: parse_sequence_query(queries))
    if isinstance(result, SequenceRange):
        assert 0 <= result.first <= 2**53
        assert 1 <= result.count <= 2**53


@STRUCTURED
@given(st.integers(0, 2**53), st.integers(1, 2**53), st.lists(st.text(max_size=10), max_size=3))
def test_sequence_queries_round_trip(first: int, count: int, others: list[str]) -> None:
    others = [q for q in others if q.partition("=")[0] not in ("s", "n")]
    queries = [*others, f"n={count}", f"s={first}"]
    assert parse_sequence_query(queries) == SequenceRange(first, count)


# -- the writer's request and reply frames --------------------------------------------------

REQUESTS = st.builds(
    writer.Request,
    st.integers(0, 2**32 - 1),
    st.integers(0, 255),
    st.integers(0, 2**16 - 1),
    INT64,
    st.none() | st.builds(SequenceRange, st.integers(0, 2**53), st.integers(1, 2**53)),
    st.none() | st.text(min_size=1, max_size=40),
    st.binary(max_size=64),
)
ERRORS = st.builds(
    lambda cls, message, hint: cls.rebuild(message, hint),
    st.sampled_from(sorted(writer.ERRORS_BY_REASON.values(), key=lambda c: c.reason)),
    st.text(max_size=60),
    st.none() | st.integers(0, 2**31),
)
OUTCOMES = (
    st.none()
    | st.builds(SubmitResult, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
    | ERRORS
)


def encode(request: writer.Request) -> bytes:
    return writer.encode_request(
        request.request_id,
        request.kind,
        request.payload,
        content_format=request.content_format,
        received_ms=request.received_ms,
        seq=request.seq,
        address=request.address,
    )


# Frames no gateway writes: shorter than their own head, an address that is not UTF-8.
_SHORT_FRAME = (3).to_bytes(4, "little") + bytes(writer.REQUEST_HEAD.size)
_BAD_ADDRESS = writer.encode_request(
    1, 1, b"x", content_format=112, received_ms=1, seq=None, address="ab"
).replace(b"ab", b"\xff\xfe")


@example(_SHORT_FRAME)
@example(_BAD_ADDRESS)
@STRUCTURED
@given(
    st.binary(max_size=MAX_INPUT)
    | mutated(st.lists(REQUESTS, max_size=3).map(lambda rs: b"".join(map(encode, rs))))
)
def test_request_frames_decode_or_are_refused(data: bytes) -> None:
    result = outcome(BadFrame, lambda: writer.decode_requests(bytearray(data)))
    if not isinstance(result, GatewayError):
        requests, used = result
        assert 0 <= used <= len(data)
        for request in requests:
            assert type(request.payload) is bytes
            assert request.address is None or type(request.address) is str


@STRUCTURED
@given(st.lists(REQUESTS, max_size=4), st.data())
def test_request_frames_round_trip_whole_and_cut_anywhere(
    requests: list[writer.Request], data: st.DataObject
) -> None:
    frames = [encode(r) for r in requests]
    stream = b"".join(frames)
    assert writer.decode_requests(bytearray(stream)) == (requests, len(stream))
    cut = data.draw(st.integers(0, len(stream)))
    whole = 0
    while whole < len(frames) and sum(map(len, frames[: whole + 1])) <= cut:
        whole += 1
    assert writer.decode_requests(bytearray(stream[:cut])) == (
        requests[:whole],
        sum(map(len, frames[:whole])),
    )


@STRUCTURED
@given(
    st.binary(max_size=MAX_INPUT)
    | mutated(
        st.lists(st.tuples(st.integers(0, 2**32 - 1), OUTCOMES), max_size=3).map(
            lambda rs: b"".join(writer.encode_reply(i, o) for i, o in rs)
        )
    )
)
def test_reply_frames_decode_or_are_refused(data: bytes) -> None:
    result = outcome(BadFrame, lambda: writer.decode_replies(bytearray(data)))
    if not isinstance(result, GatewayError):
        replies, used = result
        assert 0 <= used <= len(data)
        for reply in replies:
            assert reply.error is None or isinstance(reply.error, GatewayError)


@STRUCTURED
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), OUTCOMES), max_size=4))
def test_reply_frames_round_trip(replies: list[tuple[int, Any]]) -> None:
    stream = b"".join(writer.encode_reply(i, o) for i, o in replies)
    decoded, used = writer.decode_replies(bytearray(stream))
    assert used == len(stream)
    for (request_id, sent), got in zip(replies, decoded, strict=True):
        assert got.request_id == request_id
        if isinstance(sent, GatewayError):
            assert type(got.error) is type(sent)
            assert got.error.hint == sent.hint
            assert got.error.message == sent.message.encode(errors="backslashreplace")[:200].decode(
                errors="replace"
            )
        else:
            assert got.error is None
            assert (got.stored, got.duplicates) == (
                (sent.stored, sent.duplicates) if sent else (0, 0)
            )
