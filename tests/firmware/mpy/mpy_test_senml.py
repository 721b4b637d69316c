# ruff: noqa: PT017, UP031 - MicroPython has no pytest or contextlib; %-format is its idiom
"""senml.py: samples as SenML-CBOR records; runs on CPython and MicroPython."""

import binascii

import cbor
import senml
from errors import CborError, SenmlError

URN = "urn:dev:simpul:tkg-air-0001:"

# One sample at 1700000000.250 s: three records, bn/bt on the first, t=0.25 on each.
SAMPLE_HEX = (
    "a621781c75726e3a6465763a73696d70756c3a746b672d6169722d303030313a221a6553f100"
    "006474656d70016343656c02fa41ac000006fa3e800000"
    "a300626f6b04f506fa3e800000"
    "a3006266770363312e3206fa3e800000"
)


def _readings() -> list[tuple[str, object, object]]:
    return [("temp", "Cel", 21.5), ("ok", None, True), ("fw", "", "1.2")]


def test_group_bytes_are_the_same_on_every_interpreter() -> None:
    part, n = senml.group(URN, 1700000000250, _readings())
    assert n == 3
    assert part == binascii.unhexlify(SAMPLE_HEX), binascii.hexlify(part)


def test_first_record_carries_base_name_and_integer_base_time() -> None:
    part, n = senml.group(URN, 1700000123999, [("pm25", "ug/m3", 12), ("pm10", "ug/m3", 20)])
    records = cbor.loads(senml.pack([part], n))
    assert records[0][senml.BN] == URN
    assert records[0][senml.BT] == 1700000123
    assert isinstance(records[0][senml.BT], int)
    assert senml.BN not in records[1]
    assert senml.BT not in records[1]
    assert records[0][senml.N] == "pm25"
    assert records[1][senml.N] == "pm10"
    assert records[0][senml.U] == "ug/m3"
    assert records[1][senml.V] == 20


def test_relative_time_only_when_milliseconds_are_not_zero() -> None:
    part, n = senml.group(URN, 1700000000000, [("temp", "Cel", 21.5), ("rh", "%RH", 60)])
    for rec in cbor.loads(senml.pack([part], n)):
        assert senml.T not in rec
    part, n = senml.group(URN, 1700000000500, [("temp", "Cel", 21.5), ("rh", "%RH", 60)])
    for rec in cbor.loads(senml.pack([part], n)):
        assert rec[senml.T] == 0.5


def test_value_field_follows_the_value_type() -> None:
    part, n = senml.group(
        URN, 0, [("a", "V", 3.75), ("b", None, 7), ("c", None, False), ("d", None, "x")]
    )
    recs = cbor.loads(senml.pack([part], n))
    assert recs[0][senml.V] == 3.75
    assert recs[1][senml.V] == 7
    assert recs[2][senml.VB] is False
    assert senml.V not in recs[2]
    assert recs[3][senml.VS] == "x"


def test_unit_left_out_when_empty_or_none() -> None:
    part, n = senml.group(URN, 0, [("a", None, 1), ("b", "", 2), ("c", "V", 3)])
    recs = cbor.loads(senml.pack([part], n))
    assert senml.U not in recs[0]
    assert senml.U not in recs[1]
    assert recs[2][senml.U] == "V"


def test_pack_concatenates_samples_under_one_array_header() -> None:
    a, na = senml.group(URN, 1700000000000, [("temp", "Cel", 21.5), ("rh", "%RH", 60)])
    b, nb = senml.group(URN, 1700000060000, [("temp", "Cel", 21.0), ("rh", "%RH", 61)])
    data = senml.pack([a, b], na + nb)
    assert data[0] == 0x84
    assert data[1:] == a + b
    out = senml.decode(data)
    assert [r["n"] for r in out] == [URN + "temp", URN + "rh", URN + "temp", URN + "rh"]
    assert [r["t"] for r in out] == [1700000000, 1700000000, 1700000060, 1700000060]
    assert [r["v"] for r in out] == [21.5, 60, 21.0, 61]


def test_pack_header_for_more_than_23_records() -> None:
    parts = []
    for i in range(30):
        part, _ = senml.group(URN, 1000 * i, [("x", None, i)])
        parts.append(part)
    data = senml.pack(parts, 30)
    assert data[:2] == b"\x98\x1e"
    assert [r["v"] for r in senml.decode(data)] == list(range(30))


def test_decode_resolves_base_values() -> None:
    part, n = senml.group(URN, 1700000000250, _readings())
    out = senml.decode(senml.pack([part], n))
    assert out[0] == {"n": URN + "temp", "u": "Cel", "v": 21.5, "t": 1700000000.25}
    assert out[1] == {"n": URN + "ok", "vb": True, "t": 1700000000.25}
    assert out[2] == {"n": URN + "fw", "vs": "1.2", "t": 1700000000.25}


def test_decode_applies_base_unit_value_and_sum() -> None:
    data = cbor.dumps([{-2: "d:", -4: "V", -5: 10, 0: "a", 2: 1}, {0: "b", 5: 2, -6: 100}])
    out = senml.decode(data)
    assert out[0] == {"n": "d:a", "u": "V", "v": 11}
    assert out[1] == {"n": "d:b", "u": "V", "s": 102}


def test_empty_sample_has_no_records() -> None:
    assert senml.group(URN, 0, []) == (b"", 0)
    assert senml.decode(senml.pack([], 0)) == []


def _bad(data: bytes, needle: str) -> None:
    try:
        senml.decode(data)
    except SenmlError as e:
        assert needle in str(e), str(e)
        return
    raise AssertionError("decoded %r" % data)


def test_decode_rejects_what_is_not_senml() -> None:
    _bad(cbor.dumps({0: "x"}), "array")
    _bad(cbor.dumps([1]), "map")
    _bad(cbor.dumps([{0: "x", 99: 1, 2: 1}]), "label")
    _bad(cbor.dumps([{0: 5, 2: 1}]), "n must be str")
    _bad(cbor.dumps([{0: "x"}]), "no value")
    _bad(cbor.dumps([{2: 1}]), "name")
    _bad(cbor.dumps([{0: "x", 2: "1"}]), "number")
    _bad(cbor.dumps([{0: "x", 2: True}]), "number")
    _bad(cbor.dumps([{0: "x", 4: 1}]), "vb must be bool")


def test_senml_error_is_a_cbor_error_and_bad_cbor_raises_cbor_error() -> None:
    assert issubclass(SenmlError, CborError)
    try:
        senml.decode(b"\x81")
    except CborError:
        pass
    else:
        raise AssertionError("truncated pack decoded")


def test_group_rejects_float_time_and_unknown_value_types() -> None:
    for t_ms, readings in ((1.5, [("a", None, 1)]), (-1, [("a", None, 1)])):
        try:
            senml.group(URN, t_ms, readings)
        except SenmlError:
            pass
        else:
            raise AssertionError("accepted time %r" % t_ms)
    try:
        senml.group(URN, 0, [("a", None, [1])])
    except SenmlError as e:
        assert "list" in str(e)
    else:
        raise AssertionError("accepted a list value")
