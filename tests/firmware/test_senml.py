"""senml.py packs read by cbor2 and resolved per RFC 8428 §4.6 by the test itself."""

from typing import Any

import cbor2
import senml
from hypothesis import given, settings
from hypothesis import strategies as st

URN = "urn:dev:simpul:tkg-air-0001:"

NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0-_", min_size=1, max_size=12)
UNIT = st.sampled_from([None, "", "Cel", "%RH", "Pa", "ug/m3", "m", "V", "dBm"])
VALUE = st.one_of(
    st.integers(min_value=-(2**31), max_value=2**31),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.text(max_size=10),
)
READINGS = st.lists(st.tuples(NAME, UNIT, VALUE), min_size=1, max_size=6)
T_MS = st.integers(min_value=0, max_value=2**42)


def resolve(records: list[dict[int, Any]]) -> list[dict[str, Any]]:
    """RFC 8428 §4.6, the parts simpul uses: names and times with their bases applied; the
    time kept as an exact (seconds, milliseconds) pair."""
    out = []
    bn, bt = "", 0
    for rec in records:
        bn = rec.get(-2, bn)
        bt = rec.get(-3, bt)
        t = rec.get(6, 0)
        res = {"n": bn + rec[0], "t": (bt, round(t * 1000))}
        for label, key in ((1, "u"), (2, "v"), (3, "vs"), (4, "vb")):
            if label in rec:
                res[key] = rec[label]
        out.append(res)
    return out


def expected(t_ms: int, readings: list[tuple[str, Any, Any]]) -> list[dict[str, Any]]:
    out = []
    for name, unit, value in readings:
        res: dict[str, Any] = {"n": URN + name, "t": (t_ms // 1000, t_ms % 1000)}
        if unit:
            res["u"] = unit
        key = "vb" if isinstance(value, bool) else "vs" if isinstance(value, str) else "v"
        res[key] = value
        out.append(res)
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(T_MS, READINGS), min_size=1, max_size=4))
def test_packed_samples_resolve_to_the_readings(samples: list[tuple[int, Any]]) -> None:
    parts, total, want = [], 0, []
    for t_ms, readings in samples:
        part, n = senml.group(URN, t_ms, readings)
        assert n == len(readings)
        parts.append(part)
        total += n
        want += expected(t_ms, readings)
    data = senml.pack(parts, total)
    records = cbor2.loads(data)
    assert resolve(records) == want


@settings(max_examples=200, deadline=None)
@given(T_MS, READINGS)
def test_only_the_first_record_of_a_sample_has_base_fields(t_ms: int, readings: Any) -> None:
    part, n = senml.group(URN, t_ms, readings)
    records = cbor2.loads(senml.pack([part], n))
    assert records[0][-2] == URN
    assert type(records[0][-3]) is int
    for rec in records[1:]:
        assert -2 not in rec
        assert -3 not in rec
    for rec in records:
        assert (6 in rec) == (t_ms % 1000 != 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(T_MS, READINGS), min_size=1, max_size=3))
def test_decode_agrees_with_the_rfc_resolution(samples: list[tuple[int, Any]]) -> None:
    parts, total = [], 0
    for t_ms, readings in samples:
        part, n = senml.group(URN, t_ms, readings)
        parts.append(part)
        total += n
    data = senml.pack(parts, total)
    ours = senml.decode(data)
    theirs = resolve(cbor2.loads(data))
    assert [r["n"] for r in ours] == [r["n"] for r in theirs]
    for mine, ref in zip(ours, theirs, strict=True):
        sec, ms = ref["t"]
        assert abs(mine["t"] - (sec + ms / 1000)) < 1e-3


def test_pack_is_content_format_112_shaped() -> None:
    part, n = senml.group(URN, 1700000000000, [("temp", "Cel", 21.5)])
    assert cbor2.loads(senml.pack([part], n)) == [
        {-2: URN, -3: 1700000000, 0: "temp", 1: "Cel", 2: 21.5}
    ]
