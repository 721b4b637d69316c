"""The strict CBOR decoder on literal bytes: RFC 8949 Appendix A and F, and simpul's profile."""

from __future__ import annotations

import math

import pytest

from gateway.codec.cbor import Tagged, loads
from gateway.errors import BadPayload


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# RFC 8949 Appendix A, every example that simpul's profile accepts (value, encoding).
APPENDIX_A: list[tuple[object, str]] = [
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
    (-1, "20"),
    (-10, "29"),
    (-100, "3863"),
    (-1000, "3903e7"),
    (0.0, "f90000"),
    (-0.0, "f98000"),
    (1.0, "f93c00"),
    (1.1, "fb3ff199999999999a"),
    (1.5, "f93e00"),
    (65504.0, "f97bff"),
    (100000.0, "fa47c35000"),
    (3.4028234663852886e38, "fa7f7fffff"),
    (1.0e300, "fb7e37e43c8800759c"),
    (5.960464477539063e-8, "f90001"),
    (0.00006103515625, "f90400"),
    (-4.0, "f9c400"),
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
    ({1: 2, 3: 4}, "a201020304"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
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
    return a == b


@pytest.mark.parametrize(("value", "encoded"), APPENDIX_A)
def test_rfc8949_appendix_a_examples_decode(value: object, encoded: str) -> None:
    assert same(loads(h(encoded)), value)


# RFC 8949 Appendix A examples that are well-formed CBOR but outside simpul's profile.
@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        ("1bffffffffffffffff", "18446744073709551615 does not fit in 64 signed bits"),
        ("3bffffffffffffffff", "-18446744073709551616 does not fit in 64 signed bits"),
        ("c249010000000000000000", "tag 2 is not allowed"),  # bignum 2**64
        ("c349010000000000000000", "tag 3 is not allowed"),
        ("f97c00", "inf is not finite"),
        ("f97e00", "nan is not finite"),
        ("f9fc00", "-inf is not finite"),
        ("fa7f800000", "inf is not finite"),
        ("fa7fc00000", "nan is not finite"),
        ("faff800000", "-inf is not finite"),
        ("fb7ff0000000000000", "inf is not finite"),
        ("fb7ff8000000000000", "nan is not finite"),
        ("fbfff0000000000000", "-inf is not finite"),
        ("f7", "undefined"),
        ("f0", "unassigned simple value 16"),
        ("f8ff", "unassigned simple value 255"),
        ("c074323031332d30332d32315432303a30343a30305a", "tag 0 is not allowed"),
        ("c11a514b67b0", "tag 1 is not allowed"),
        ("c1fb41d452d9ec200000", "tag 1 is not allowed"),
        ("d74401020304", "tag 23 is not allowed"),
        ("d818456449455446", "tag 24 is not allowed"),
        ("d82076687474703a2f2f7777772e6578616d706c652e636f6d", "tag 32 is not allowed"),
    ],
)
def test_appendix_a_examples_outside_the_profile_are_refused(encoded: str, message: str) -> None:
    with pytest.raises(BadPayload, match=message):
        loads(h(encoded))


# RFC 8949 Appendix F.1: every example of malformed CBOR.
_APPENDIX_F = """
    18 19 1a 1b 1901 1a0102 1b01020304050607 38 58 78 98 9a01ff00 b8 d8 f8 f900 fa0000 fb000000
    41 61 5affffffff00 5bffffffffffffffff010203 7affffffff00 7b7fffffffffffffff010203
    81 818181818181818181 8200 a1 a20102 a100 a2000000
    c0
    5f4100 7f6100
    9f 9f0102 bf bf01020102 819f 9f8000 9f9f9f9f9fffffffff 9f819f819f9fffffff
    1c 1d 1e 3c 3d 3e 5c 5d 5e 7c 7d 7e 9c 9d 9e bc bd be dc dd de fc fd fe
    f800 f801 f818 f81f
    5f00ff 5f21ff 5f6100ff 5f80ff 5fa0ff 5fc000ff 5fe0ff 7f4100ff
    5f5f4100ffff 7f7f6100ffff
    ff
    81ff 8200ff a1ff a1ff00 a100ff a20000ff 9f81ff 9f829f819f9fffffffff
    bf00ff bf000000ff
    1f 3f df
"""
APPENDIX_F = [example for line in _APPENDIX_F.splitlines() for example in line.split()]


@pytest.mark.parametrize("encoded", APPENDIX_F)
def test_rfc8949_appendix_f_malformed_examples_are_refused(encoded: str) -> None:
    with pytest.raises(BadPayload, match="not valid CBOR"):
        loads(h(encoded), tags=range(64))  # even with every small tag allowed


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        ("", "truncated"),
        ("ff", "break outside an indefinite-length item"),
        ("0000", "1 bytes of trailing data"),
        ("a2 01 01 01 02", "duplicate map key 1"),
        ("a2 6161 01 6161 02", "duplicate map key 'a'"),
        ("a2 00 01 1800 02", "duplicate map key 0"),  # the same key, encoded two ways
        ("bf 01 01 01 02 ff", "duplicate map key 1"),
        ("a2 20 00 3800 00", "duplicate map key -1"),
        ("a1 f93c00 00", "map key must be an integer or text, got a float"),
        ("a1 f5 00", "map key must be an integer or text, got true"),
        ("a1 f6 00", "map key must be an integer or text, got none"),
        ("a1 4100 00", "map key must be an integer or text, got a byte string"),
        ("a1 80 00", "map key must be an integer or text, got an array"),
        ("62 c328", "not UTF-8"),
        ("63 eda080", "not UTF-8"),  # a UTF-16 surrogate (U+D800) encoded as UTF-8
        ("66 eda080edb080", "not UTF-8"),  # a surrogate pair encoded as two 3-byte forms
        ("62 c0af", "not UTF-8"),  # overlong "/"
        ("64 f4908080", "not UTF-8"),  # beyond U+10FFFF
        ("7f 61c3 61bc ff", "not UTF-8"),  # a code point split between chunks (RFC 8949 §3.2.3)
        ("a1 00 7818" + "61" * 23 + "ff", "not UTF-8"),  # as a map value of 24..255 bytes
        ("a1 00 7820 6161", "truncated"),
        ("a1 00 6a 6161", "truncated"),
        ("1b 8000000000000000", "9223372036854775808 does not fit"),
        ("3b 8000000000000000", "-9223372036854775809 does not fit"),
        ("9b ffffffffffffffff", "truncated"),  # claims 2**64 items: nothing allocated
        ("bb ffffffffffffffff", "truncated"),
        ("98 ff 00", "truncated"),
    ],
)
def test_profile_refuses_with_a_clear_message(encoded: str, message: str) -> None:
    with pytest.raises(BadPayload, match=message):
        loads(h(encoded))


@pytest.mark.parametrize("head", ["", "81", "a1 00", "a1 6161", "9f", "bf 00"])
@pytest.mark.parametrize(
    "number", ["f97e00", "f97c00", "fa7fc00000", "faff800000", "fb7ff8000000000000"]
)
def test_non_finite_floats_are_refused_wherever_they_stand(head: str, number: str) -> None:
    tail = "ff" if head in ("9f", "bf 00") else ""
    with pytest.raises(BadPayload, match="is not finite"):
        loads(h(head + number + tail))


def test_integers_at_the_edges_of_64_signed_bits_are_kept() -> None:
    assert loads(h("1b7fffffffffffffff")) == 2**63 - 1
    assert loads(h("3b7fffffffffffffff")) == -(2**63)


def test_integer_and_text_keys_that_look_alike_are_distinct() -> None:
    assert loads(h("a2 01 00 6131 00")) == {1: 0, "1": 0}


def test_text_split_between_chunks_on_code_point_boundaries_is_joined() -> None:
    assert loads(h("7f 62c3bc 63e6b0b4 ff")) == "\u00fc\u6c34"


def test_an_allowed_tag_comes_back_tagged_and_others_do_not() -> None:
    assert loads(h("d2 80"), tags=(18,)) == Tagged(18, [])
    with pytest.raises(BadPayload, match="tag 17 is not allowed"):
        loads(h("d1 80"), tags=(18,))
    with pytest.raises(BadPayload, match="tag 18 is not allowed"):
        loads(h("d2 80"))


def test_nesting_is_bounded() -> None:
    assert loads(h("81" * 16 + "00"), max_depth=16) is not None
    for nested in ("81" * 17 + "00", "9f" * 17 + "ff" * 17, "a1 00" * 17 + "00", "d2" * 17 + "00"):
        with pytest.raises(BadPayload, match="nested too deeply"):
            loads(h(nested), max_depth=16, tags=(18,))


def test_item_count_is_bounded() -> None:
    assert loads(h("83 010203"), max_items=3) == [1, 2, 3]
    for encoded in ("84 01020304", "9f 01020304 ff", "a2 0102 0304", "5f 4101 4102 4103 4104 ff"):
        with pytest.raises(BadPayload, match="more data items"):
            loads(h(encoded), max_items=3)


def test_the_decoder_takes_any_bytes_like_input() -> None:
    assert loads(bytearray(b"\x82\x01\x02")) == [1, 2]
    assert loads(memoryview(b"\x82\x01\x02")) == [1, 2]


def test_float16_and_float32_values_are_kept_exactly() -> None:
    assert loads(h("fa 41aa6666")) == 21.299999237060547  # float32 21.3, not "tidied"
    assert loads(h("f9 3400")) == 0.25


def test_errors_name_the_byte_offset() -> None:
    with pytest.raises(BadPayload, match=r"duplicate map key 1 \(at byte 3\)"):
        loads(h("a2 01 01 01 02"))
