# ruff: noqa: PT017, UP031 - MicroPython has no pytest or contextlib; %-format is its idiom
"""cbor.py against RFC 8949 Appendix A and hostile input; runs on CPython and MicroPython."""

import binascii

import cbor
from errors import CborError


def _h(s: str) -> bytes:
    return binascii.unhexlify(s.replace(" ", ""))


def _raises(data: bytes, needle: str = "") -> None:
    try:
        obj = cbor.loads(data)
    except CborError as e:
        assert needle in str(e), "%r: message %r lacks %r" % (data, str(e), needle)
        return
    raise AssertionError("%r decoded to %r instead of raising CborError" % (data, obj))


def _same(a: object, b: object) -> bool:
    """Equality that also tells NaN from other floats and -0.0 from 0.0."""
    if isinstance(a, float) and isinstance(b, float):
        if a != a:
            return b != b
        return a == b and str(a)[0] == str(b)[0]
    return type(a) is type(b) and a == b


# (value, encoding) both ways: dumps(value) == encoding and loads(encoding) == value.
BOTH_WAYS = [  # type: list[tuple[object, str]]
    (0, "00"),
    (1, "01"),
    (10, "0a"),
    (23, "17"),
    (24, "1818"),
    (25, "1819"),
    (100, "1864"),
    (1000, "1903e8"),
    (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"),
    (18446744073709551616, "c249010000000000000000"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (-18446744073709551617, "c349010000000000000000"),
    (-1, "20"),
    (-10, "29"),
    (-100, "3863"),
    (-1000, "3903e7"),
    (1.1, "fb3ff199999999999a"),
    (100000.0, "fa47c35000"),
    (3.4028234663852886e38, "fa7f7fffff"),
    (1.0e300, "fb7e37e43c8800759c"),
    (-4.1, "fbc010666666666666"),
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
    (b"", "40"),
    (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"),
    ("a", "6161"),
    ("IETF", "6449455446"),
    ('"\\', "62225c"),
    ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"),
    ("\U00010151", "64f0908591"),
    ([], "80"),
    ([1, 2, 3], "83010203"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"),
    (["a", {"b": "c"}], "826161a161626163"),
]

# Appendix A items this codec reads but writes differently (half floats, indefinite length)
# or only reads: value, encoding.
DECODE_ONLY = [  # type: list[tuple[object, str]]
    (0.0, "f90000"),
    (-0.0, "f98000"),
    (1.0, "f93c00"),
    (1.5, "f93e00"),
    (65504.0, "f97bff"),
    (5.960464477539063e-8, "f90001"),
    (0.00006103515625, "f90400"),
    (-4.0, "f9c400"),
    (float("inf"), "f97c00"),
    (float("nan"), "f97e00"),
    (float("-inf"), "f9fc00"),
    (float("inf"), "fa7f800000"),
    (float("nan"), "fa7fc00000"),
    (float("-inf"), "faff800000"),
    (float("inf"), "fb7ff0000000000000"),
    (float("nan"), "fb7ff8000000000000"),
    (float("-inf"), "fbfff0000000000000"),
    ({1: 2, 3: 4}, "a201020304"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (
        {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"},
        "a56161614161626142616361436164614461656145",
    ),
    (b"\x01\x02\x03\x04\x05", "5f42010243030405ff"),
    ("streaming", "7f657374726561646d696e67ff"),
    ([], "9fff"),
    ([1, [2, 3], [4, 5]], "9f018202039f0405ffff"),
    ([1, [2, 3], [4, 5]], "9f01820203820405ff"),
    ([1, [2, 3], [4, 5]], "83018202039f0405ff"),
    ([1, [2, 3], [4, 5]], "83019f0203ff820405"),
    (list(range(1, 26)), "9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff"),
    ({"a": 1, "b": [2, 3]}, "bf61610161629f0203ffff"),
    (["a", {"b": "c"}], "826161bf61626163ff"),
    ({"Fun": True, "Amt": -2}, "bf6346756ef563416d7421ff"),
]


def test_rfc8949_vectors_encode() -> None:
    for value, enc in BOTH_WAYS:
        got = cbor.dumps(value)
        assert got == _h(enc), "%r -> %r, want %s" % (value, binascii.hexlify(got), enc)


def test_rfc8949_vectors_decode() -> None:
    for value, enc in BOTH_WAYS + DECODE_ONLY:
        got = cbor.loads(_h(enc))
        if isinstance(value, float):
            assert _same(got, value), "%s -> %r, want %r" % (enc, got, value)
        else:
            assert got == value, "%s -> %r, want %r" % (enc, got, value)


def test_rfc8949_tags_decode_as_tag_objects() -> None:
    assert cbor.loads(_h("c074323031332d30332d32315432303a30343a30305a")) == cbor.Tag(
        0, "2013-03-21T20:04:00Z"
    )
    assert cbor.loads(_h("c11a514b67b0")) == cbor.Tag(1, 1363896240)
    assert cbor.loads(_h("c1fb41d452d9ec200000")) == cbor.Tag(1, 1363896240.5)
    assert cbor.loads(_h("d74401020304")) == cbor.Tag(23, b"\x01\x02\x03\x04")
    assert cbor.loads(_h("d818456449455446")) == cbor.Tag(24, b"dIETF")
    tag = cbor.loads(_h("d82076687474703a2f2f7777772e6578616d706c652e636f6d"))
    assert tag.tag == 32
    assert tag.value == "http://www.example.com"
    assert cbor.dumps(cbor.Tag(1, 1363896240)) == _h("c11a514b67b0")


def test_float_encoded_as_float32_only_when_exact() -> None:
    assert cbor.dumps(1.5) == _h("fa3fc00000")
    assert cbor.dumps(-0.0) == _h("fa80000000")
    assert cbor.dumps(float("inf")) == _h("fa7f800000")
    assert cbor.dumps(0.1)[0] == 0xFB
    assert cbor.dumps(1e300)[0] == 0xFB
    nan = cbor.loads(cbor.dumps(float("nan")))
    assert nan != nan


def test_float32_roundtrip_keeps_value() -> None:
    for x in (21.5, -40.0, 1013.25, 0.25, 3.0e-5, 12345.678):
        assert cbor.loads(cbor.dumps(x)) == x


def test_int_boundaries_of_each_width() -> None:
    for n, size in ((23, 1), (24, 2), (255, 2), (256, 3), (65535, 3), (65536, 5)):
        assert len(cbor.dumps(n)) == size, n
        assert len(cbor.dumps(-1 - n)) == size, -1 - n
    for n in (4294967295, 4294967296, 2**63, 2**64 - 1, -(2**64), 2**100, -(2**100)):
        assert cbor.loads(cbor.dumps(n)) == n


def test_tuple_and_bytearray_encode_like_list_and_bytes() -> None:
    assert cbor.dumps((1, 2)) == cbor.dumps([1, 2])
    assert cbor.dumps(bytearray(b"ab")) == cbor.dumps(b"ab")


def test_map_with_integer_and_text_keys_roundtrips() -> None:
    obj = {-2: "urn:dev:x:", -3: 1700000000, 0: "temp", 2: 21.5, "k": [b"\x00", None]}
    assert cbor.loads(cbor.dumps(obj)) == obj


def test_unencodable_object_raises() -> None:
    try:
        cbor.dumps({1: object()})
    except CborError as e:
        assert "object" in str(e)
    else:
        raise AssertionError("dumps accepted an object")


def test_truncated_input_raises() -> None:
    whole = cbor.dumps({"a": [1, 1000000, b"xyz", "text", 1.1, -70000]})
    for cut in range(len(whole)):
        _raises(whole[:cut])


def test_empty_input_raises() -> None:
    _raises(b"", "truncated")


def test_trailing_bytes_raise() -> None:
    _raises(_h("0000"), "trailing")
    _raises(_h("8101ff"), "trailing")


def test_reserved_additional_information_raises() -> None:
    for ib in (0x1C, 0x1D, 0x1E, 0x3C, 0x5D, 0x7E, 0x9C, 0xBD, 0xDE, 0xFC, 0xFD, 0xFE):
        _raises(bytes((ib,)), "reserved")


def test_indefinite_length_where_not_allowed_raises() -> None:
    _raises(_h("1f"), "indefinite")
    _raises(_h("3f"), "indefinite")
    _raises(_h("df01"), "indefinite")
    _raises(_h("ff"), "break")
    _raises(_h("5f6161ff"), "chunk")  # text chunk in a byte string
    _raises(_h("5f5f4101ffff"), "chunk")  # nested indefinite chunk
    _raises(_h("9f01"), "break")  # never closed


def test_unsupported_simple_values_raise() -> None:
    _raises(_h("f7"), "simple")  # undefined
    _raises(_h("f0"), "simple")
    _raises(_h("f8ff"), "simple")
    _raises(_h("f818"), "two-byte")  # simple value < 32 in the two-byte form


def test_length_longer_than_input_raises_before_allocating() -> None:
    _raises(_h("5bffffffffffffffff"), "truncated")
    _raises(_h("7a7fffffff61"), "truncated")
    _raises(_h("9bffffffffffffffff"), "longer than the input")
    _raises(_h("ba7fffffff0000"), "longer than the input")


def test_nesting_deeper_than_limit_raises() -> None:
    deep = b"\x81" * (cbor.MAX_DEPTH + 1) + b"\x00"
    _raises(deep, "nesting")
    ok = b"\x81" * cbor.MAX_DEPTH + b"\x00"
    assert cbor.loads(ok) is not None
    _raises(b"\x9f" * 10000, "nesting")


def test_encoding_deeper_than_limit_raises() -> None:
    obj = []  # type: list[object]
    for _ in range(cbor.MAX_DEPTH + 1):
        obj = [obj]
    try:
        cbor.dumps(obj)
    except CborError as e:
        assert "nesting" in str(e)
    else:
        raise AssertionError("dumps nested without limit")


def test_invalid_utf8_raises() -> None:
    _raises(_h("62c328"), "UTF-8")
    _raises(_h("61ff"), "UTF-8")


def test_duplicate_map_key_raises() -> None:
    _raises(_h("a201020103"), "duplicate")


def test_unhashable_map_key_raises() -> None:
    _raises(_h("a1800102"), "key")  # [] as a key, then trailing: the key fails first
    _raises(_h("a18001"), "key")


def test_bignum_tag_around_non_bytes_raises() -> None:
    _raises(_h("c201"), "bignum")
