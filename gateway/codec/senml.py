"""SenML (RFC 8428) decoding: bytes in, plain :class:`Reading` objects out.

Pure functions: no sockets, files or clocks. The caller passes ``now_ms`` so that SenML's
relative times (and records without any time) resolve against the moment of receipt.
Whatever the bytes, the decoders return readings or raise :class:`BadPayload`; every
reading they return can be stored as it is (text is Unicode, integers fit in 64 bits,
floats are finite, times are whole milliseconds in range).

simpul's boards name themselves in the base name, ``bn = "urn:dev:simpul:<board_id>:"``, and
each record's ``n`` is the quantity (``"pm2_5"``). Base fields (``bn``, ``bt``, ``bu``, ``bv``,
``bs``) apply to every following record until a later record changes them, as §4.1 says.

The bytes go through the strict decoders (:mod:`gateway.codec.cbor`,
:mod:`gateway.codec.strict_json`): a record that names a field twice, text that is not
Unicode, a number beyond 64 bits or not finite, a CBOR tag: all refused before SenML begins.

Resolution rules worth knowing (RFC 8428 §4.5, §4.6):

* time = ``bt + t`` seconds; a result below 2**28 is relative to ``now_ms`` (negative means
  in the past); no time at all means "now". Times become integer milliseconds:
  ``bt*1000 + round(t*1000)``, so a board's integer ``bt`` and fractional ``t`` add exactly.
  ``bt`` and ``t`` must each lie within ±2**40 s, and an absolute time in 2000..2099
  (:data:`EARLIEST_TIME_MS`, :data:`LATEST_TIME_MS`); see :func:`_time_ms` for why.
* ``v`` gets ``bv`` added, ``s`` gets ``bs``; a record with no value but a base value takes
  ``bv`` itself. An integer stays an integer, a float32 keeps exactly its value.
* a record needs exactly one of ``v``/``vs``/``vb``/``vd``; a record with only a sum ``s``
  is kept with kind ``"s"``; when a value is present ``s`` is not stored.
* ``vd`` is a byte string in CBOR and base64url *without padding* in JSON (§4.3); padded,
  non-URL-safe or non-canonical base64 is refused, so that one string means one value.
* in SenML-CBOR the SenML fields have integer labels only; the same field under its JSON
  name (``"bn"``) is refused rather than guessed at.
* fields whose label ends in ``_`` must be understood (§4.4); we understand none, so such a
  pack is refused. Other unknown fields are ignored. ``bver`` above 10 is refused.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from typing import Final, Literal, NamedTuple, TypeAlias

from gateway.codec import cbor, strict_json
from gateway.errors import BadPayload

ValueKind: TypeAlias = Literal["v", "vs", "vb", "vd", "s"]
Value: TypeAlias = int | float | str | bool | bytes

#: Every simpul board's base name starts with this (RFC 8428 §4.5.1 suggests URNs).
BOARD_URN_PREFIX = "urn:dev:simpul:"
#: Times (in seconds) below this are relative to now (RFC 8428 §4.5.3).
RELATIVE_TIME_LIMIT = 2**28
#: Highest SenML version we understand (RFC 8428 §4.4).
SENML_VERSION = 10
#: Absolute times must fall in [2000-01-01, 2100-01-01) UTC, in Unix milliseconds.
EARLIEST_TIME_MS: Final = 946_684_800_000
LATEST_TIME_MS: Final = 4_102_444_800_000

# A pack nests two deep (array of maps); extension fields may nest a little more.
_MAX_DEPTH: Final = 8
# Data items allowed per record, on average, before a pack is refused undecoded.
_ITEMS_PER_RECORD: Final = 64
# Largest |bt| or |t| in seconds: 2**40 s is 35,000 years, yet times 1000 it stays exact.
_MAX_SECONDS: Final = 2**40


class _Labels(NamedTuple):
    """The labels of one SenML representation (RFC 8428 §6): integers in CBOR, names in JSON."""

    bver: int | str
    bn: int | str
    bt: int | str
    bu: int | str
    bv: int | str
    bs: int | str
    n: int | str
    u: int | str
    v: int | str
    vs: int | str
    vb: int | str
    s: int | str
    t: int | str
    ut: int | str
    vd: int | str


_NAMES = _Labels(*_Labels._fields)
CBOR_LABELS = _Labels(-1, -2, -3, -4, -5, -6, 0, 1, 2, 3, 4, 5, 6, 7, 8)
JSON_LABELS = _NAMES
_VALUE_NAMES: tuple[ValueKind, ...] = ("v", "vs", "vb", "vd")
# Per representation: every SenML label, the base fields' labels, and those of vs, vb and vd.
_LABEL_SETS: dict[_Labels, tuple[frozenset[int | str], ...]] = {
    labels: (
        frozenset(labels),
        frozenset((labels.bver, labels.bn, labels.bt, labels.bu, labels.bv, labels.bs)),
        frozenset((labels.vs, labels.vb, labels.vd)),
    )
    for labels in (CBOR_LABELS, JSON_LABELS)
}
_TEXT_NAMES = frozenset(_NAMES)

# RFC 8428 §4.5.1: names use these characters and start with a letter or digit.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-:./_]*")
_BOARD_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}")
_BASE64URL_RE = re.compile(r"[A-Za-z0-9_-]*")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Latest relative time accepted once resolved: year 9999, well inside int64 milliseconds.
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
    """Decode a SenML-CBOR pack (content-format 112) into readings.

    Raises :class:`BadPayload` for anything else, whatever the bytes.
    """
    # A pack that announces too many records is refused before any of them is decoded.
    if payload[:1] and 0x98 <= payload[0] <= 0x9B:
        width = 1 << (payload[0] - 0x98)
        announced = int.from_bytes(payload[1 : 1 + width], "big")
        if announced > max_records:
            raise BadPayload(f"SenML pack has {announced} records, limit is {max_records}")
    pack = cbor.loads(payload, max_depth=_MAX_DEPTH, max_items=1 + _ITEMS_PER_RECORD * max_records)
    return resolve_pack(pack, labels=CBOR_LABELS, now_ms=now_ms, max_records=max_records)


def decode_senml_json(payload: bytes, *, now_ms: int, max_records: int) -> list[Reading]:
    """Decode a SenML-JSON pack (content-format 110) into readings.

    Raises :class:`BadPayload` for anything else, whatever the bytes.
    """
    pack = strict_json.loads(
        payload, max_depth=_MAX_DEPTH, max_items=1 + _ITEMS_PER_RECORD * max_records
    )
    return resolve_pack(pack, labels=JSON_LABELS, now_ms=now_ms, max_records=max_records)


def resolve_pack(
    pack: object,
    *,
    labels: _Labels,
    now_ms: int,
    max_records: int,
) -> list[Reading]:
    """Resolve a decoded pack (a list of maps) into readings, applying base fields.

    ``labels`` is :data:`CBOR_LABELS` (integer labels) or :data:`JSON_LABELS` (names).
    """
    if type(pack) is not list:
        raise BadPayload(f"SenML pack must be an array, got {_type_name(pack)}")
    if not pack:
        raise BadPayload("SenML pack is empty")
    if len(pack) > max_records:
        raise BadPayload(f"SenML pack has {len(pack)} records, limit is {max_records}")

    l_bver, l_bn, l_bt, l_bu, l_bv, l_bs = labels[:6]  # locals: read for every record
    l_n, l_u, l_v, l_t = labels.n, labels.u, labels.v, labels.t
    known, base_labels, other_values = _LABEL_SETS[labels]
    is_cbor = labels is CBOR_LABELS
    base_name = ""
    base_time: int | float = 0
    base_ms = 0  # base_time in milliseconds
    base_time_ms: int | None = None  # resolved when a record first needs it
    base_unit: str | None = None
    base_value: int | float | None = None
    base_sum: int | float | None = None
    readings: list[Reading] = []
    append = readings.append
    new_reading = tuple.__new__  # Reading(...) without NamedTuple's Python-level __new__
    for index, record in enumerate(pack):
        if type(record) is not dict:
            raise BadPayload(f"record {index} must be a map, got {_type_name(record)}")
        if not record.keys() <= known:
            _check_extensions(record, is_cbor, index)
        if not base_labels.isdisjoint(record):
            if l_bver in record:
                bver = record[l_bver]
                if type(bver) is not int or not 1 <= bver <= SENML_VERSION:
                    raise BadPayload(f"record {index}: unsupported SenML version {bver!r:.40}")
            if l_bn in record:
                base_name = _text(record[l_bn], "bn", index)
            if l_bt in record:
                base_time = _seconds(record[l_bt], "bt", index)
                base_ms = _seconds_to_ms(base_time)
                base_time_ms = None
            if l_bu in record:
                base_unit = _text(record[l_bu], "bu", index)
            if l_bv in record:
                base_value = _number(record[l_bv], "bv", index)
            if l_bs in record:
                base_sum = _number(record[l_bs], "bs", index)

        # The common case inline: this loop runs for every reading a gateway stores.
        if l_n in record:
            n = record[l_n]
            full_name = base_name + (n if type(n) is str else _text(n, "n", index))
        else:
            full_name = base_name
        parsed = _parse_name(full_name)
        if isinstance(parsed, str):
            raise BadPayload(f"record {index}: {parsed}")
        board_id, name = parsed
        if l_u in record:
            unit = record[l_u]
            if type(unit) is not str:
                _text(unit, "u", index)
        else:
            unit = base_unit
        if l_v in record and other_values.isdisjoint(record):
            value: Value = record[l_v]
            if type(value) is not float or value - value != 0.0:
                value = _number(value, "v", index)
            if base_value is not None:
                value = _checked_sum(value, base_value, "v + bv", index)
            kind: ValueKind = "v"
        else:
            kind, value = _value(record, labels, base_value, base_sum, is_cbor, index)
        if l_t in record:
            t = record[l_t]
            if type(t) is not float or not -_MAX_SECONDS <= t <= _MAX_SECONDS:  # NaN: False
                t = _seconds(t, "t", index)
            time_ms = _time_ms(base_time, base_ms, t, now_ms, index)
        else:
            if base_time_ms is None:
                base_time_ms = _time_ms(base_time, base_ms, 0, now_ms, index)
            time_ms = base_time_ms
        append(new_reading(Reading, (board_id, name, unit, kind, value, time_ms)))
    return readings


def _check_extensions(record: dict[object, object], is_cbor: bool, index: int) -> None:
    """Labels beyond SenML's own: refuse what we must understand but do not; ignore the rest.

    In SenML-CBOR a SenML field has one label, its integer (RFC 8428 §6): the same field
    under its JSON name too would give a record two meanings, so such a name is refused.
    """
    for key in record:
        if type(key) is str:
            if key.endswith("_"):
                raise BadPayload(f"record {index}: must-understand field {key!r:.40} not supported")
            if is_cbor and key in _TEXT_NAMES:
                label = getattr(CBOR_LABELS, key)
                raise BadPayload(
                    f"record {index}: field {key!r} must have the integer label {label}"
                    " in SenML-CBOR"
                )
        elif type(key) is not int:
            raise BadPayload(f"record {index}: label {key!r:.40} is not a string or integer")
        # else an unknown integer label, an extension we may ignore (§6)


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
    record: dict[object, object],
    L: _Labels,
    base_value: int | float | None,
    base_sum: int | float | None,
    is_cbor: bool,
    index: int,
) -> tuple[ValueKind, Value]:
    present = [name for name in _VALUE_NAMES if getattr(L, name) in record]
    if len(present) > 1:
        raise BadPayload(f"record {index}: more than one value field ({', '.join(present)})")
    if not present:
        if base_value is not None:
            return "v", base_value
        if L.s in record:
            total = _number(record[L.s], "s", index)
            if base_sum is not None:
                total = _checked_sum(total, base_sum, "s + bs", index)
            return "s", total
        raise BadPayload(f"record {index}: no value (v, vs, vb, vd or s)")
    kind = present[0]
    raw = record[getattr(L, kind)]
    if kind == "v":
        number = _number(raw, "v", index)
        return "v", number if base_value is None else _checked_sum(
            number, base_value, "v + bv", index
        )
    if kind == "vs":
        return "vs", _text(raw, "vs", index)
    if kind == "vb":
        if type(raw) is not bool:
            raise BadPayload(f"record {index}: vb must be a boolean, got {_type_name(raw)}")
        return "vb", raw
    return "vd", _cbor_data(raw, index) if is_cbor else _json_data(raw, index)


def _cbor_data(raw: object, index: int) -> bytes:
    if type(raw) is not bytes:
        raise BadPayload(f"record {index}: vd must be a byte string, got {_type_name(raw)}")
    return raw


def _json_data(raw: object, index: int) -> bytes:
    """SenML-JSON's vd: base64url without padding (RFC 8428 §4.3, RFC 4648 §5).

    Strict, so that one string means one byte string: padding (``=``), characters outside
    the URL-safe alphabet, an impossible length and unused bits that are not zero are all
    refused.
    """
    if type(raw) is not str:
        raise BadPayload(f"record {index}: vd must be a base64url string, got {_type_name(raw)}")
    if len(raw) % 4 == 1 or not _BASE64URL_RE.fullmatch(raw):
        raise BadPayload(f"record {index}: vd is not base64url without padding")
    try:
        data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        raise BadPayload(f"record {index}: vd is not base64url without padding") from None
    if base64.urlsafe_b64encode(data).rstrip(b"=") != raw.encode("ascii"):
        raise BadPayload(f"record {index}: vd is not canonical base64url (unused bits set)")
    return data


def _time_ms(base_time: int | float, base_ms: int, t: int | float, now_ms: int, index: int) -> int:
    """A record's time in Unix milliseconds; ``base_time`` and ``t`` within ±2**40 s.

    ``base_ms`` is ``base_time`` in milliseconds. Absolute times must fall in 2000..2099: no
    simpul board measured before 2000, a time past 2100 is a broken clock, and in that span
    float seconds keep whole milliseconds exactly (batches carry float seconds). Relative
    times resolve against the gateway's clock, which this does not second-guess: they only
    need to land in year 0..9999.
    """
    total_ms = base_ms + (t * 1000 if type(t) is int else round(t * 1000))
    if base_time + t >= RELATIVE_TIME_LIMIT:
        if EARLIEST_TIME_MS <= total_ms < LATEST_TIME_MS:
            return total_ms
        raise BadPayload(
            f"record {index}: time {base_time + t!r} s is outside 2000..2099 (a broken clock?)"
        )
    total_ms += now_ms
    if not 0 <= total_ms <= _MAX_TIME_MS:
        raise BadPayload(f"record {index}: relative time {base_time + t!r} s is out of range")
    return total_ms


def _seconds_to_ms(seconds: int | float) -> int:
    return seconds * 1000 if type(seconds) is int else round(seconds * 1000)


def _checked_sum(value: int | float, base: int | float, what: str, index: int) -> int | float:
    total = value + base
    if type(total) is float and total - total != 0.0:
        raise BadPayload(f"record {index}: {what} is not finite")
    if type(total) is int and not _INT64_MIN <= total <= _INT64_MAX:
        raise BadPayload(f"record {index}: {what} does not fit in 64 bits")
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


def _seconds(raw: object, label: str, index: int) -> int | float:
    """A time field (bt or t): a finite number of seconds within ±2**40."""
    seconds = _number(raw, label, index)
    if not -_MAX_SECONDS <= seconds <= _MAX_SECONDS:
        raise BadPayload(f"record {index}: time {label} {seconds!r} s is out of range")
    return seconds


def _text(raw: object, label: str, index: int) -> str:
    if type(raw) is not str:
        raise BadPayload(f"record {index}: {label} must be a string, got {_type_name(raw)}")
    return raw


def _type_name(value: object) -> str:
    return type(value).__name__


def value_to_json(kind: ValueKind, value: Value) -> object:
    """A reading's value as JSON would carry it: bytes as base64url (unpadded), as SenML does."""
    if isinstance(value, bytes):
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode("ascii")
    return value


__all__ = [
    "BOARD_URN_PREFIX",
    "CBOR_LABELS",
    "EARLIEST_TIME_MS",
    "JSON_LABELS",
    "LATEST_TIME_MS",
    "Reading",
    "Value",
    "ValueKind",
    "decode_senml_cbor",
    "decode_senml_json",
    "is_board_id",
    "resolve_pack",
    "value_to_json",
]
