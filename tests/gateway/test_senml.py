"""SenML decoding against literal byte vectors, RFC 8428's examples, and hostile input."""

from __future__ import annotations

import json
import struct

import cbor2
import pytest

from gateway.codec.senml import Reading, decode_senml_cbor, decode_senml_json
from gateway.errors import BadPayload
from gateway.intake.responses import error_response

NOW_MS = 1_800_000_000_000


def cbor(payload: bytes, max_records: int = 100) -> list[Reading]:
    return decode_senml_cbor(payload, now_ms=NOW_MS, max_records=max_records)


def senml_json(pack: object, max_records: int = 100) -> list[Reading]:
    return decode_senml_json(json.dumps(pack).encode(), now_ms=NOW_MS, max_records=max_records)


# One record as a board sends it: bn, bt (uint32), n, v as float32, t as float16.
BOARD_VECTOR = bytes.fromhex(
    "81a5"
    "21"
    + "75"
    + b"urn:dev:simpul:aq-07:".hex()  # -2 bn
    + "22"
    + "1a6553f100"  # -3 bt 1700000000
    + "00"
    + "65"
    + b"pm2_5".hex()  # 0 n
    + "02"
    + "fa41aa6666"  # 2 v float32 21.3
    + "06"
    + "f93400"  # 6 t float16 0.25
)


def test_board_vector_decodes_with_float32_value_kept_exactly() -> None:
    (reading,) = cbor(BOARD_VECTOR)
    float32 = struct.unpack(">f", bytes.fromhex("41aa6666"))[0]
    assert reading == Reading("aq-07", "pm2_5", None, "v", float32, 1_700_000_000_250)
    assert reading.value != 21.3  # not "tidied" to the nearest double


def test_base_fields_apply_until_changed() -> None:
    pack = [
        {-2: "urn:dev:simpul:b1:", -3: 1_700_000_000, -4: "Cel", 0: "t", 2: 20},
        {0: "t", 6: 1, 2: 21},
        {0: "rh", 1: "%RH", 2: 50},
        {-2: "urn:dev:simpul:b2:", -4: "hPa", 0: "p", 2: 1013.25},
        {-3: 1_700_000_100, 0: "p", 2: 1013.5},
    ]
    assert cbor(cbor2.dumps(pack)) == [
        Reading("b1", "t", "Cel", "v", 20, 1_700_000_000_000),
        Reading("b1", "t", "Cel", "v", 21, 1_700_000_001_000),
        Reading("b1", "rh", "%RH", "v", 50, 1_700_000_000_000),
        Reading("b2", "p", "hPa", "v", 1013.25, 1_700_000_000_000),
        Reading("b2", "p", "hPa", "v", 1013.5, 1_700_000_100_000),
    ]


def test_base_value_is_added_and_integers_stay_integers() -> None:
    pack = [{-2: "urn:dev:simpul:b1:", -3: 1_700_000_000, -5: 100, 0: "lvl", 2: 5}, {0: "x"}]
    first, second = cbor(cbor2.dumps(pack))
    assert (first.value, type(first.value)) == (105, int)
    assert (second.kind, second.value) == ("v", 100)


def test_value_kinds_are_kept() -> None:
    pack = [
        {-2: "urn:dev:simpul:b1:", -3: 1_700_000_000, 0: "s", 3: "ok"},
        {0: "door", 4: True, 6: 1},
        {0: "raw", 8: b"\x00\xff", 6: 2},
        {0: "rain", 5: 12.5, 6: 3},
    ]
    kinds = [(r.kind, r.value) for r in cbor(cbor2.dumps(pack))]
    assert kinds == [("vs", "ok"), ("vb", True), ("vd", b"\x00\xff"), ("s", 12.5)]


def test_relative_and_missing_times_resolve_against_now() -> None:
    pack = [{-2: "urn:dev:simpul:b1:", 0: "a", 2: 1}, {0: "b", 2: 2, 6: -5}]
    first, second = cbor(cbor2.dumps(pack))
    assert first.time_ms == NOW_MS
    assert second.time_ms == NOW_MS - 5000


def test_rfc8428_multiple_datapoints_example_in_json() -> None:
    # RFC 8428 §5.1.3, with the base name moved under simpul's URN prefix.
    pack = [
        {
            "bn": "urn:dev:simpul:ow-10e2073a:",
            "bt": 1.276020076001e09,
            "bu": "A",
            "bver": 5,
            "n": "voltage",
            "u": "V",
            "v": 120.1,
        },
        {"n": "current", "t": -5, "v": 1.2},
        {"n": "current", "t": -4, "v": 1.3},
        {"n": "current", "v": 1.7},
    ]
    readings = senml_json(pack)
    assert readings[0] == Reading("ow-10e2073a", "voltage", "V", "v", 120.1, 1_276_020_076_001)
    assert readings[1] == Reading("ow-10e2073a", "current", "A", "v", 1.2, 1_276_020_071_001)
    assert [r.time_ms for r in readings[2:]] == [1_276_020_072_001, 1_276_020_076_001]


def test_json_data_value_is_base64url() -> None:
    pack = [{"bn": "urn:dev:simpul:b1:", "n": "raw", "vd": "AP8", "bt": 1_700_000_000}]
    assert senml_json(pack)[0].value == b"\x00\xff"


def test_json_and_cbor_decode_to_the_same_readings() -> None:
    cbor_pack = [{-2: "urn:dev:simpul:b1:", -3: 1_700_000_000, 0: "t", 1: "Cel", 2: 21.5}]
    json_pack = [{"bn": "urn:dev:simpul:b1:", "bt": 1_700_000_000, "n": "t", "u": "Cel", "v": 21.5}]
    assert cbor(cbor2.dumps(cbor_pack)) == senml_json(json_pack)


def test_unknown_integer_labels_are_ignored() -> None:
    pack = [{-2: "urn:dev:simpul:b1:", -3: 1_700_000_000, 0: "t", 2: 1, 99: "future"}]
    assert len(cbor(cbor2.dumps(pack))) == 1


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "not valid CBOR"),
        (b"\x81\xa1", "not valid CBOR"),  # truncated
        (b"\xff\xfe\xfd", "not valid CBOR"),
        (b"\x80\x00", "trailing data"),
        (b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff", "18446744073709551615 records"),  # undecoded
        (b"\x9f\x9b\xff\xff\xff\xff\xff\xff\xff\xff\xff", "not valid CBOR"),
        (cbor2.dumps({"not": "a list"}), "must be an array"),
        (cbor2.dumps([]), "empty"),
        (cbor2.dumps([1, 2]), "must be a map"),
        (cbor2.dumps([{0: "t", 2: 1}]), "not under urn:dev:simpul:"),
        (cbor2.dumps([{-2: "urn:dev:simpul:b1:", 2: 1}]), "missing name"),
        (cbor2.dumps([{-2: "urn:dev:simpul:b 1:", 0: "t", 2: 1}]), "bad board id"),
        (cbor2.dumps([{-2: "urn:dev:simpul:b1:", 0: "t"}]), "no value"),
        (cbor2.dumps([{-2: "urn:dev:simpul:b1:", 0: "t", 2: "12"}]), "v must be a number"),
        (cbor2.dumps([{-2: "urn:dev:simpul:b1:", 0: "t", 2: True}]), "v must be a number"),
        (cbor2.dumps([{-2: "urn:dev:simpul:b1:", 0: "t", 2: 1, 3: "x"}]), "more than one"),
        (cbor2.dumps([{-2: "urn:dev:simpul:b1:", 0: "t", 2: float("nan")}]), "not finite"),
        (cbor2.dumps([{-2: "urn:dev:simpul:b1:", 0: "t", 2: 2**70}]), "tag 2 is not allowed"),
        (cbor2.dumps([{-2: "urn:dev:simpul:b1:", 0: "t", 2: 2**63}]), "64 signed bits"),
        (cbor2.dumps([{-2: "urn:dev:simpul:b1:", 0: 5, 2: 1}]), "n must be a string"),
        (cbor2.dumps([{-2: "urn:dev:simpul:b1:", -3: "now", 0: "t", 2: 1}]), "bt must be"),
        (cbor2.dumps([{-2: "urn:dev:simpul:b1:", -3: 1e30, 0: "t", 2: 1}]), "out of range"),
        (cbor2.dumps([{-1: 11, -2: "urn:dev:simpul:b1:", 0: "t", 2: 1}]), "version"),
        (cbor2.dumps([{-2: "urn:dev:simpul:b1:", 0: "t", 2: 1, "crit_": 1}]), "must-understand"),
        (cbor2.dumps([{-2: "urn:dev:simpul:b1:", 0: "t", 2: 1, 1.5: 1}]), "map key must be"),
    ],
)
def test_bad_cbor_packs_are_refused_with_a_clear_message(payload: bytes, message: str) -> None:
    with pytest.raises(BadPayload, match=message):
        cbor(payload)


def test_bad_payload_is_a_value_error_rendering_4_00() -> None:
    with pytest.raises(ValueError, match="not valid CBOR") as caught:
        cbor(b"\xff")
    assert isinstance(caught.value, BadPayload)
    assert str(error_response(caught.value).code) == "4.00 Bad Request"


def test_too_many_records_are_refused() -> None:
    pack = [{-2: "urn:dev:simpul:b1:", 0: f"r{i}", 2: i} for i in range(11)]
    with pytest.raises(BadPayload, match="11 records, limit is 10"):
        cbor(cbor2.dumps(pack), max_records=10)


@pytest.mark.parametrize(
    "payload",
    [b"", b"[", b'{"bn": 1}', b"[1e999]", b'[{"bn": "urn:dev:simpul:b1:", "n": "t", "v": 1e999}]'],
)
def test_bad_json_packs_are_refused(payload: bytes) -> None:
    with pytest.raises(BadPayload):
        decode_senml_json(payload, now_ms=NOW_MS, max_records=10)


# One meaning per pack: what the strict decoders and the resolver refuse rather than guess.


def test_a_record_naming_a_field_twice_is_refused_in_cbor_and_json() -> None:
    # {-2: "urn:dev:simpul:b1:", -2: "urn:dev:simpul:b2:", 0: "t", 2: 1}: which board?
    twice = bytes.fromhex("81a4") + b"".join(
        bytes([0x21, 0x60 + len(name)]) + name.encode()
        for name in ("urn:dev:simpul:b1:", "urn:dev:simpul:b2:")
    )
    with pytest.raises(BadPayload, match="duplicate map key -2"):
        cbor(twice + bytes.fromhex("006174") + bytes.fromhex("0201"))
    text = b'[{"bn":"urn:dev:simpul:b1:","bn":"urn:dev:simpul:b2:","n":"t","v":1}]'
    with pytest.raises(BadPayload, match="duplicate name 'bn'"):
        decode_senml_json(text, now_ms=NOW_MS, max_records=10)


def test_a_senml_field_under_its_json_name_in_cbor_is_refused() -> None:
    pack = [{-2: "urn:dev:simpul:b1:", 0: "t", 2: 1, "v": 2}]
    with pytest.raises(BadPayload, match="field 'v' must have the integer label 2"):
        cbor(cbor2.dumps(pack))


def test_base_sum_is_added_to_the_sum() -> None:
    pack = [{-2: "urn:dev:simpul:b1:", -3: 1_700_000_000, -6: 100, 0: "rain", 5: 2.5}]
    assert [(r.kind, r.value) for r in cbor(cbor2.dumps(pack))] == [("s", 102.5)]


@pytest.mark.parametrize(
    ("vd", "message"),
    [
        ("!!!", "not base64url"),
        ("AP8=", "not base64url"),  # padding: RFC 8428 omits it, so it is refused
        ("AP+/", "not base64url"),  # the standard alphabet, not the URL-safe one
        ("A", "not base64url"),  # no byte string has this length
        ("AP9", "not canonical"),  # the unused bits say 1: a second spelling of b"\x00\xff"
        ("AP 8", "not base64url"),
    ],
)
def test_json_data_value_must_be_canonical_unpadded_base64url(vd: str, message: str) -> None:
    pack = [{"bn": "urn:dev:simpul:b1:", "n": "raw", "vd": vd, "bt": 1_700_000_000}]
    with pytest.raises(BadPayload, match=message):
        senml_json(pack)


def test_cbor_data_value_must_be_a_byte_string() -> None:
    pack = [{-2: "urn:dev:simpul:b1:", -3: 1_700_000_000, 0: "raw", 8: "AP8"}]
    with pytest.raises(BadPayload, match="vd must be a byte string"):
        cbor(cbor2.dumps(pack))


@pytest.mark.parametrize(
    ("bt", "t", "time_ms"),
    [
        (946_684_800, 0, 946_684_800_000),  # 2000-01-01T00:00:00Z, the first accepted
        (4_102_444_799, 0.999, 4_102_444_799_999),  # the last millisecond of 2099
        (946_684_799, 1, 946_684_800_000),  # bt alone is before 2000; bt + t is not
        (0, -(2**27), NOW_MS - 2**27 * 1000),  # relative: 4 years before now
    ],
)
def test_times_in_range_resolve_to_milliseconds(bt: int, t: float, time_ms: int) -> None:
    pack = [{-2: "urn:dev:simpul:b1:", -3: bt, 0: "q", 2: 1, 6: t}]
    assert cbor(cbor2.dumps(pack))[0].time_ms == time_ms


@pytest.mark.parametrize(
    ("bt", "t", "message"),
    [
        (946_684_799, 0, "outside 2000..2099"),
        (4_102_444_800, 0, "outside 2000..2099"),
        (2**28, 0, "outside 2000..2099"),  # 1978: a board whose clock was never set
        (1.8e305, 0, "time bt 1.8e\\+305 s is out of range"),  # issue 8, finding 1
        (1_700_000_000, 1e300, "time t 1e\\+300 s is out of range"),
        (-1e300, 1e300, "time bt -1e\\+300 s is out of range"),  # would sum to 0
        (0, -(2**40), "relative time"),
    ],
)
def test_times_out_of_range_are_refused_never_overflowed(bt: float, t: float, message: str) -> None:
    pack = [{-2: "urn:dev:simpul:b1:", -3: bt, 0: "q", 2: 1, 6: t}]
    with pytest.raises(BadPayload, match=message):
        cbor(cbor2.dumps(pack))
