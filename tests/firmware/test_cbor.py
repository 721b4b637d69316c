"""cbor.py cross-checked against cbor2, an independent implementation (CPython only)."""

import contextlib
import math
from typing import Any

import cbor
import cbor2
import pytest
from errors import CborError
from hypothesis import given, settings
from hypothesis import strategies as st

INT = st.integers(min_value=-(2**64), max_value=2**64 - 1)
BIG = st.integers(min_value=-(2**80), max_value=2**80)
FLOAT = st.floats(allow_nan=False)
SCALAR = st.one_of(INT, BIG, FLOAT, st.binary(max_size=40), st.text(max_size=20), st.booleans())
SCALAR = SCALAR | st.none()
KEY = st.one_of(st.integers(min_value=-(2**40), max_value=2**40), st.text(max_size=8))
VALUE = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(KEY, inner, max_size=5),
    max_leaves=20,
)


def same(a: Any, b: Any) -> bool:
    """Equal, with floats compared bit for bit in sign (0.0 vs -0.0) and bool kept apart."""
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, float)
            and isinstance(b, float)
            and a == b
            and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


@settings(max_examples=400, deadline=None)
@given(VALUE)
def test_cbor2_reads_what_dumps_writes(value: Any) -> None:
    assert same(cbor2.loads(cbor.dumps(value)), value)


@settings(max_examples=400, deadline=None)
@given(VALUE)
def test_loads_reads_what_cbor2_writes(value: Any) -> None:
    assert same(cbor.loads(cbor2.dumps(value)), value)


@settings(max_examples=200, deadline=None)
@given(VALUE)
def test_loads_reads_cbor2_canonical_half_floats(value: Any) -> None:
    assert same(cbor.loads(cbor2.dumps(value, canonical=True)), value)


@settings(max_examples=200, deadline=None)
@given(st.floats(width=32, allow_nan=False))
def test_exact_float32_values_take_five_bytes(x: float) -> None:
    data = cbor.dumps(x)
    assert data[0] == 0xFA
    assert len(data) == 5
    assert cbor2.loads(data) == x


@settings(max_examples=200, deadline=None)
@given(FLOAT)
def test_float_is_exact_after_roundtrip(x: float) -> None:
    data = cbor.dumps(x)
    assert len(data) in (5, 9)
    assert same(cbor2.loads(data), x)


def test_nan_roundtrips_as_nan() -> None:
    assert math.isnan(cbor2.loads(cbor.dumps(float("nan"))))
    assert math.isnan(cbor.loads(cbor2.dumps(float("nan"))))


def test_unknown_tags_come_back_as_tag_objects() -> None:
    data = cbor2.dumps(cbor2.CBORTag(1000, ["x", 1]))
    assert cbor.loads(data) == cbor.Tag(1000, ["x", 1])
    back = cbor2.loads(cbor.dumps(cbor.Tag(1000, ["x", 1])))
    assert back.tag == 1000
    assert list(back.value) == ["x", 1]


def test_bignums_agree_with_cbor2() -> None:
    for n in (2**64, 2**100, -(2**64) - 1, -(2**130)):
        assert cbor.dumps(n) == cbor2.dumps(n)
        assert cbor.loads(cbor2.dumps(n)) == n


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_cbor_error(data: bytes) -> None:
    with contextlib.suppress(CborError):
        cbor.loads(data)


@settings(max_examples=300, deadline=None)
@given(VALUE, st.data())
def test_any_damage_to_an_item_decodes_or_raises_cbor_error(
    value: Any, data: st.DataObject
) -> None:
    raw = bytearray(cbor.dumps(value))
    i = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[i] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)))
    with contextlib.suppress(CborError):
        cbor.loads(bytes(raw[:cut]))


@pytest.mark.parametrize(
    "data",
    [b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff", b"\x9b\x00\x00\x00\x01\x00\x00\x00\x00"],
    ids=["bytes-of-2**64-1", "array-of-2**32"],
)
def test_huge_declared_lengths_fail_fast(data: bytes) -> None:
    with pytest.raises(CborError):
        cbor.loads(data)
