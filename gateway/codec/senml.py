"""SenML (RFC 8428) decoding: bytes in, plain :class:`Reading` objects out.

Pure functions: no sockets, files or clocks. The caller passes ``now_ms`` so that SenML's
relative times (and records without any time) resolve against the moment of receipt.

simpul's boards name themselves in the base name, ``bn = "urn:dev:simpul:<board_id>:"``, and
each record's ``n`` is the quantity (``"pm2_5"``). Base fields (``bn``, ``bt``, ``bu``, ``bv``)
apply to every following record until a later record changes them, as §4.1 says.

Resolution rules worth knowing (RFC 8428 §4.5, §4.6):

* time = ``bt + t`` seconds; a result below 2**28 is relative to ``now_ms`` (negative means
  in the past); no time at all means "now". Times become integer milliseconds:
  ``bt*1000 + round(t*1000)``, so a board's integer ``bt`` and fractional ``t`` add exactly.
* ``v`` gets ``bv`` added; a record with no value but a base value takes ``bv`` itself.
  An integer stays an integer, and a float decoded from a float32 keeps exactly that value.
* a record needs exactly one of ``v``/``vs``/``vb``/``vd``; a record with only a sum ``s``
  is kept with kind ``"s"``; when a value is present ``s`` is not stored.
* fields whose label ends in ``_`` must be understood (§4.4); we understand none, so such a
  pack is refused. Other unknown fields are ignored. ``bver`` above 10 is refused.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import json
import math
import re
from collections.abc import Mapping
from typing import Literal, NamedTuple, TypeAlias

import cbor2

from gateway.errors import BadPayload

ValueKind: TypeAlias = Literal["v", "vs", "vb", "vd", "s"]
Value: TypeAlias = int | float | str | bool | bytes

#: Every simpul board's base name starts with this (RFC 8428 §4.5.1 suggests URNs).
BOARD_URN_PREFIX = "urn:dev:simpul:"
#: Times (in seconds) below this are relative to now (RFC 8428 §4.5.3).
RELATIVE_TIME_LIMIT = 2**28
#: Highest SenML version we understand (RFC 8428 §4.4).
SENML_VERSION = 10

# RFC 8428 §6 integer labels for the CBOR representation.
_CBOR_LABELS: dict[int, str] = {
    -1: "bver",
    -2: "bn",
    -3: "bt",
    -4: "bu",
    -5: "bv",
    -6: "bs",
    0: "n",
    1: "u",
    2: "v",
    3: "vs",
    4: "vb",
    5: "s",
    6: "t",
    7: "ut",
    8: "vd",
}
_KNOWN_LABELS = frozenset(_CBOR_LABELS.values())

# RFC 8428 §4.5.1: names use these characters and start with a letter or digit.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-:./_]*")
_BOARD_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Latest time we accept: year 9999, far beyond any honest clock, well inside int64 ms.
_MAX_TIME_MS = 253_402_300_799_000


class Reading(NamedTuple):
    """One resolved measurement: which board, what quantity, its value, and when."""

    board_id: str
    name: str
    unit: str | None
    kind: ValueKind
    value: Value
    time_ms: int


def decode_senml_cbor(payload: bytes, *, now_ms: int, max_records: int) -> list[Reading]:
    """Decode a SenML-CBOR pack (content-format 112) into readings."""
    stream = io.BytesIO(payload)
    try:
        pack = cbor2.CBORDecoder(stream).decode()
    except Exception as exc:  # cbor2 raises many kinds on hostile input; all mean "bad CBOR".
        raise BadPayload(f"not valid CBOR: {_short(exc)}") from None
    if stream.tell() != len(payload):
        raise BadPayload(
            f"{len(payload) - stream.tell()} bytes of trailing data after the CBOR item"
        )
    return resolve_pack(pack, labels=_CBOR_LABELS, now_ms=now_ms, max_records=max_records)


def decode_senml_json(payload: bytes, *, now_ms: int, max_records: int) -> list[Reading]:
    """Decode a SenML-JSON pack (content-format 110) into readings."""
    try:
        pack = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise BadPayload(f"not valid JSON: {_short(exc)}") from None
    return resolve_pack(pack, labels=None, now_ms=now_ms, max_records=max_records)


def resolve_pack(
    pack: object,
    *,
    labels: Mapping[int, str] | None,
    now_ms: int,
    max_records: int,
) -> list[Reading]:
    """Resolve a decoded pack (a list of maps) into readings, applying base fields.

    ``labels`` maps CBOR integer labels to their names; ``None`` for JSON (text labels).
    """
    if type(pack) is not list:
        raise BadPayload(f"SenML pack must be an array, got {_type_name(pack)}")
    if not pack:
        raise BadPayload("SenML pack is empty")
    if len(pack) > max_records:
        raise BadPayload(f"SenML pack has {len(pack)} records, limit is {max_records}")

    base_name = ""
    base_time: int | float = 0
    base_time_ms = _time_ms(0, 0, now_ms, 0)
    base_unit: str | None = None
    base_value: int | float | None = None
    readings: list[Reading] = []
    for index, raw in enumerate(pack):
        record = _record_fields(raw, labels, index)
        if "bver" in record:
            bver = record["bver"]
            if type(bver) is not int or not 1 <= bver <= SENML_VERSION:
                raise BadPayload(f"record {index}: unsupported SenML version {bver!r}")
        if "bn" in record:
            base_name = _text(record["bn"], "bn", index)
        if "bt" in record:
            base_time = _number(record["bt"], "bt", index)
            base_time_ms = _time_ms(base_time, 0, now_ms, index)
        if "bu" in record:
            base_unit = _text(record["bu"], "bu", index)
        if "bv" in record:
            base_value = _number(record["bv"], "bv", index)

        full_name = base_name + _text(record["n"], "n", index) if "n" in record else base_name
        parsed = _parse_name(full_name)
        if isinstance(parsed, str):
            raise BadPayload(f"record {index}: {parsed}")
        board_id, name = parsed
        unit = _text(record["u"], "u", index) if "u" in record else base_unit
        kind, value = _value(record, base_value, index)
        if "t" in record:
            time_ms = _time_ms(base_time, _number(record["t"], "t", index), now_ms, index)
        else:
            time_ms = base_time_ms
        readings.append(Reading(board_id, name, unit, kind, value, time_ms))
    return readings


def _record_fields(raw: object, labels: Mapping[int, str] | None, index: int) -> dict[str, object]:
    """The record's fields by SenML label; unknown (extension) fields left out."""
    if type(raw) is not dict:
        raise BadPayload(f"record {index} must be a map, got {_type_name(raw)}")
    fields: dict[str, object] = {}
    for key, value in raw.items():
        key_type = type(key)
        if key_type is int:
            if labels is not None and key in labels:
                fields[labels[key]] = value
            # else: an unknown integer label is an extension we may ignore (§6)
        elif key_type is str:
            if key.endswith("_"):
                raise BadPayload(f"record {index}: must-understand field {key!r} not supported")
            if key in _KNOWN_LABELS:
                fields[key] = value
        else:
            raise BadPayload(f"record {index}: label {key!r} is not a string or integer")
    return fields


def is_board_id(text: object) -> bool:
    """Whether ``text`` is a valid board id (the part of the base name after the prefix)."""
    return isinstance(text, str) and _BOARD_ID_RE.fullmatch(text) is not None


@functools.lru_cache(maxsize=8192)
def _parse_name(full_name: str) -> tuple[str, str] | str:
    """(board id, name) from a resolved name, or what is wrong with it.

    Cached: a fleet repeats the same few hundred names all day.
    """
    if not full_name:
        return "no name (neither bn nor n)"
    if not full_name.startswith(BOARD_URN_PREFIX):
        return f"name {full_name[:80]!r} is not under {BOARD_URN_PREFIX}"
    board_id, sep, name = full_name[len(BOARD_URN_PREFIX) :].partition(":")
    if not sep or not _BOARD_ID_RE.fullmatch(board_id):
        return f"bad board id in base name {full_name[:80]!r}"
    if not name:
        return f"missing name n for board {board_id!r}"
    if len(name) > 64 or not _NAME_RE.fullmatch(name):
        return f"bad name {name[:80]!r}"
    return board_id, name


def _value(
    record: Mapping[str, object], base_value: int | float | None, index: int
) -> tuple[ValueKind, Value]:
    if "v" in record and "vs" not in record and "vb" not in record and "vd" not in record:
        number = _number(record["v"], "v", index)  # the common case, first
        return "v", number if base_value is None else _checked_sum(number, base_value, index)
    present = [k for k in ("v", "vs", "vb", "vd") if k in record]
    if len(present) > 1:
        raise BadPayload(f"record {index}: more than one value field ({', '.join(present)})")
    if not present:
        if base_value is not None:
            return "v", base_value
        if "s" in record:
            return "s", _number(record["s"], "s", index)
        raise BadPayload(f"record {index}: no value (v, vs, vb, vd or s)")
    kind = present[0]
    raw = record[kind]
    if kind == "v":
        number = _number(raw, "v", index)
        return "v", number if base_value is None else _checked_sum(number, base_value, index)
    if kind == "vs":
        return "vs", _text(raw, "vs", index)
    if kind == "vb":
        if type(raw) is not bool:
            raise BadPayload(f"record {index}: vb must be a boolean, got {_type_name(raw)}")
        return "vb", raw
    return "vd", _data(raw, index)


def _data(raw: object, index: int) -> bytes:
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, str):  # SenML-JSON carries vd as base64url without padding (§5).
        try:
            return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        except (binascii.Error, ValueError):
            raise BadPayload(f"record {index}: vd is not base64url") from None
    raise BadPayload(f"record {index}: vd must be bytes, got {_type_name(raw)}")


def _time_ms(base_time: int | float, t: int | float, now_ms: int, index: int) -> int:
    total_ms = _seconds_to_ms(base_time) + _seconds_to_ms(t)
    if base_time + t < RELATIVE_TIME_LIMIT:
        total_ms += now_ms
    if not 0 <= total_ms <= _MAX_TIME_MS:
        raise BadPayload(f"record {index}: time {base_time + t!r} s is out of range")
    return total_ms


def _seconds_to_ms(seconds: int | float) -> int:
    return seconds * 1000 if isinstance(seconds, int) else round(seconds * 1000)


def _checked_sum(value: int | float, base: int | float, index: int) -> int | float:
    total = value + base
    if isinstance(total, float) and not math.isfinite(total):
        raise BadPayload(f"record {index}: v + bv is not finite")
    if isinstance(total, int) and not _INT64_MIN <= total <= _INT64_MAX:
        raise BadPayload(f"record {index}: v + bv does not fit in 64 bits")
    return total


def _number(raw: object, label: str, index: int) -> int | float:
    if type(raw) is float:
        if raw - raw == 0.0:  # false for NaN and infinities
            return raw
        raise BadPayload(f"record {index}: {label} is not finite ({raw!r})")
    if type(raw) is int:
        if _INT64_MIN <= raw <= _INT64_MAX:
            return raw
        raise BadPayload(f"record {index}: {label} does not fit in 64 bits")
    raise BadPayload(f"record {index}: {label} must be a number, got {_type_name(raw)}")


def _text(raw: object, label: str, index: int) -> str:
    if type(raw) is not str:
        raise BadPayload(f"record {index}: {label} must be a string, got {_type_name(raw)}")
    return raw


def _type_name(value: object) -> str:
    return type(value).__name__


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def value_to_json(kind: ValueKind, value: Value) -> object:
    """A reading's value as JSON would carry it: bytes as base64url (unpadded), as SenML does."""
    if isinstance(value, bytes):
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode("ascii")
    return value


__all__ = [
    "BOARD_URN_PREFIX",
    "Reading",
    "Value",
    "ValueKind",
    "decode_senml_cbor",
    "decode_senml_json",
    "is_board_id",
    "resolve_pack",
    "value_to_json",
]
