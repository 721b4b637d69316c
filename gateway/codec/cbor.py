"""The one strict CBOR decoder (RFC 8949) every gateway parser uses: bytes in, plain objects out.

A pure function: no sockets, files or clocks. SenML-CBOR packs, health reports and signed
batches all decode through :func:`loads`, so a byte string means the same thing, or is refused
for the same reason, wherever it arrives. Whatever the input, :func:`loads` returns or raises
:class:`gateway.errors.BadPayload` (message ``"not valid CBOR: ..."``), nothing else.

What comes out: ``int``, ``float``, ``bool``, ``None``, ``str``, ``bytes``, ``list``,
``dict`` (keys ``int`` or ``str``) and :class:`Tagged` for the tags a caller allows.

simpul's CBOR profile, stricter than RFC 8949's well-formedness and why:

* **One meaning per item.** A map may not repeat a key (RFC 8949 §5.6 calls such a map
  invalid): two ``bn`` in one SenML record would otherwise land a reading on whichever board
  the decoder happened to keep. Map keys must be integers or text strings: every simpul
  format uses only those, and it keeps Python's ``1 == 1.0 == True`` from merging keys that
  CBOR holds distinct.
* **Text is text.** Text strings must be valid UTF-8 (no surrogates, no overlong forms), so
  every string can be stored, logged and re-encoded; an indefinite-length text string's
  chunks must each be valid on their own (RFC 8949 §3.2.3).
* **Numbers the store can hold.** Integers must fit in 64 signed bits (SQLite's INTEGER);
  floats (half, single, double) must be finite. Bignums and other tags are refused unless the
  caller allows that tag (batches allow COSE_Sign1, 18); ``undefined`` and unassigned simple
  values are refused.
* **Bounded work.** Nesting is limited (``max_depth``), as is the number of items
  (``max_items``); a length is never trusted beyond the bytes actually present, so a header
  claiming 2**64 items allocates nothing.
* **Exactly one item.** Trailing bytes are refused.

Indefinite-length strings, arrays and maps are accepted (RFC 8949 §3.2), everywhere alike;
non-preferred ("non-shortest") heads are accepted too, since they mean the same value.
"""

from __future__ import annotations

import struct
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from gateway.errors import BadPayload

#: Default deepest nesting of arrays, maps and tags; simpul's formats nest at most five deep.
MAX_DEPTH: Final = 16
#: Default most data items in one input (container elements, keys and values all count).
MAX_ITEMS: Final = 1 << 20

_INT64_MAX: Final = 2**63 - 1
_BREAK: Final = 0xFF
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_F16 = struct.Struct(">e")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")
_SIMPLE: Final[dict[int, bool | None]] = {20: False, 21: True, 22: None}


@dataclass(frozen=True, slots=True)
class Tagged:
    """A tagged data item (RFC 8949 §3.4), for a tag the caller allowed."""

    tag: int
    value: object


class _Truncated(Exception):
    """An item runs past the end of the input (turned into :class:`BadPayload`)."""


def loads(
    data: bytes | bytearray | memoryview,
    *,
    tags: Collection[int] = (),
    max_depth: int = MAX_DEPTH,
    max_items: int = MAX_ITEMS,
) -> object:
    """Decode ``data``, which must hold exactly one CBOR data item, under simpul's profile.

    ``tags`` lists the tag numbers this format allows (anywhere in the item); every other tag
    is refused. Raises :class:`BadPayload` naming the first problem and its byte offset.
    """
    data = bytes(data)
    decoder = _Decoder(data, frozenset(tags), max_items)
    try:
        value, end = decoder.item(0, max_depth)
    except (_Truncated, IndexError, struct.error):
        raise BadPayload("not valid CBOR: truncated (an item runs past the end)") from None
    if end != len(data):
        raise BadPayload(f"not valid CBOR: {len(data) - end} bytes of trailing data after the item")
    return value


def _bad(message: str, at: int) -> BadPayload:
    return BadPayload(f"not valid CBOR: {message} (at byte {at})")


class _Decoder:
    """One decoding: the input, the allowed tags and the item budget left."""

    __slots__ = ("budget", "data", "tags")

    def __init__(self, data: bytes, tags: frozenset[int], max_items: int) -> None:
        self.data = data
        self.tags = tags
        self.budget = max_items

    def spend(self, count: int, at: int) -> None:
        self.budget -= count
        if self.budget < 0:
            raise _bad("more data items than this format allows", at)

    def item(self, pos: int, depth: int) -> tuple[object, int]:
        """The item starting at ``pos`` and the offset just past it."""
        data = self.data
        start = pos
        initial = data[pos]
        pos += 1
        major = initial >> 5
        info = initial & 0x1F
        if major == 7:
            return self._simple_or_float(initial, info, pos)
        # The head's argument (RFC 8949 §3): a count, a length, a value or a tag number.
        if info < 24:
            arg = info
        elif info == 24:
            arg = data[pos]
            pos += 1
        elif info == 25:
            (arg,) = _U16.unpack_from(data, pos)
            pos += 2
        elif info == 26:
            (arg,) = _U32.unpack_from(data, pos)
            pos += 4
        elif info == 27:
            (arg,) = _U64.unpack_from(data, pos)
            pos += 8
        elif info == 31 and 2 <= major <= 5:
            return self._indefinite(major, start, pos, depth)
        else:
            raise _bad(f"malformed head 0x{initial:02x}", start)

        if major == 0:
            if arg > _INT64_MAX:
                raise _bad(f"integer {arg} does not fit in 64 signed bits", start)
            return arg, pos
        if major == 1:
            if arg > _INT64_MAX:
                raise _bad(f"integer {-1 - arg} does not fit in 64 signed bits", start)
            return -1 - arg, pos
        if major == 2 or major == 3:
            end = pos + arg
            if end > len(data):
                raise _Truncated
            if major == 2:
                return data[pos:end], end
            return _text(data, pos, end, start), end
        if depth <= 0:
            raise _bad("nested too deeply", start)
        if major == 4:
            if arg > len(data) - pos:  # every item takes at least one byte
                raise _Truncated
            self.spend(arg, start)
            return self._array(arg, pos, depth - 1)
        if major == 5:
            if arg > (len(data) - pos) >> 1:
                raise _Truncated
            self.spend(2 * arg, start)
            return self._map(arg, pos, depth - 1)
        # major == 6: a tag
        if arg not in self.tags:
            raise _bad(f"tag {arg} is not allowed here", start)
        self.spend(1, start)
        value, pos = self.item(pos, depth - 1)
        return Tagged(arg, value), pos

    def _array(self, count: int, pos: int, depth: int) -> tuple[list[object], int]:
        """``count`` items from ``pos``; a SenML pack's records (small maps) without detour."""
        data = self.data
        items: list[object] = []
        append = items.append
        value: object
        for _ in range(count):
            initial = data[pos]
            if 0xA0 <= initial < 0xB8 and depth > 0:
                pairs = initial - 0xA0
                self.budget -= 2 * pairs
                if self.budget < 0:
                    raise _bad("more data items than this format allows", pos)
                value, pos = self._map(pairs, pos + 1, depth - 1)
            else:
                value, pos = self.item(pos, depth)
            append(value)
        return items, pos

    def _map(self, count: int, pos: int, depth: int) -> tuple[dict[int | str, object], int]:
        """``count`` key/value pairs from ``pos``, the commonest scalars decoded inline.

        This loop is most of the work of decoding a SenML pack, hence the repetition.
        """
        data = self.data
        size = len(data)
        result: dict[int | str, object] = {}
        key: object
        value: object
        for _ in range(count):
            key_at = pos
            initial = data[pos]
            if initial < 0x18:
                key = initial
                pos += 1
            elif 0x20 <= initial < 0x38:
                key = 0x1F - initial
                pos += 1
            elif 0x60 <= initial < 0x78:
                end = pos + initial - 0x5F
                if end > size:
                    raise _Truncated
                try:
                    key = data[pos + 1 : end].decode()
                except UnicodeDecodeError:
                    key = _text(data, pos + 1, end, pos)  # raises, naming the problem
                pos = end
            else:
                key, pos = self.item(pos, depth)
                key_type = type(key)
                if key_type is not int and key_type is not str:
                    raise _bad(f"map key must be an integer or text, got {_kind(key)}", key_at)
            if key in result:
                raise _bad(f"duplicate map key {key!r:.40}", key_at)
            initial = data[pos]
            if initial < 0x18:
                value = initial
                pos += 1
            elif 0x60 <= initial < 0x78:
                end = pos + initial - 0x5F
                if end > size:
                    raise _Truncated
                try:
                    value = data[pos + 1 : end].decode()
                except UnicodeDecodeError:
                    value = _text(data, pos + 1, end, pos)  # raises, naming the problem
                pos = end
            elif initial == 0xFA:
                (value,) = _F32.unpack_from(data, pos + 1)
                if value - value != 0.0:  # type: ignore[operator]  # NaN or an infinity
                    raise _bad(f"float {value!r} is not finite", pos)
                pos += 5
            elif initial == 0x78:  # text of 24..255 bytes: a SenML base name
                end = pos + 2 + data[pos + 1]
                if end > size:
                    raise _Truncated
                try:
                    value = data[pos + 2 : end].decode()
                except UnicodeDecodeError:
                    value = _text(data, pos + 2, end, pos)  # raises, naming the problem
                pos = end
            elif initial == 0xFB or initial == 0xF9:
                value, pos = self._float(initial, pos)
            elif initial == 0x1A:
                (value,) = _U32.unpack_from(data, pos + 1)
                pos += 5
            elif initial == 0x18:
                value = data[pos + 1]
                pos += 2
            else:
                value, pos = self.item(pos, depth)
            result[key] = value  # type: ignore[index]  # key is int or str, checked above
        return result, pos

    def _float(self, initial: int, pos: int) -> tuple[float, int]:
        if initial == 0xFB:
            (number,) = _F64.unpack_from(self.data, pos + 1)
            end = pos + 9
        elif initial == 0xFA:
            (number,) = _F32.unpack_from(self.data, pos + 1)
            end = pos + 5
        else:
            (number,) = _F16.unpack_from(self.data, pos + 1)
            end = pos + 3
        if number - number != 0.0:  # NaN or an infinity
            raise _bad(f"float {number!r} is not finite", pos)
        return number, end

    def _simple_or_float(self, initial: int, info: int, pos: int) -> tuple[object, int]:
        data = self.data
        start = pos - 1
        if info == 25:
            (number,) = _F16.unpack_from(data, pos)
            pos += 2
        elif info == 26:
            (number,) = _F32.unpack_from(data, pos)
            pos += 4
        elif info == 27:
            (number,) = _F64.unpack_from(data, pos)
            pos += 8
        elif info in _SIMPLE:
            return _SIMPLE[info], pos
        elif info == 23:
            raise _bad("undefined is not a value here", start)
        elif info < 24:
            raise _bad(f"unassigned simple value {info}", start)
        elif info == 24:
            simple = data[pos]
            if simple < 32:
                raise _bad(f"malformed simple value {simple} in two bytes", start)
            raise _bad(f"unassigned simple value {simple}", start)
        elif info == 31:
            raise _bad("break outside an indefinite-length item", start)
        else:
            raise _bad(f"malformed head 0x{initial:02x}", start)
        if number - number != 0.0:  # NaN or an infinity
            raise _bad(f"float {number!r} is not finite", start)
        return number, pos

    def _indefinite(self, major: int, start: int, pos: int, depth: int) -> tuple[object, int]:
        """An indefinite-length string, array or map; ``pos`` is just past its head."""
        data = self.data
        if major <= 3:
            # A string of definite-length chunks of the same major type, then a break.
            chunks: list[bytes] = []
            texts: list[str] = []
            while data[pos] != _BREAK:
                chunk_at = pos
                if data[pos] >> 5 != major or data[pos] & 0x1F == 31:
                    raise _bad("bad chunk in an indefinite-length string", chunk_at)
                self.spend(1, chunk_at)
                value, pos = self.item(pos, 0)
                if major == 2:
                    assert isinstance(value, bytes)
                    chunks.append(value)
                else:
                    assert isinstance(value, str)
                    texts.append(value)
            return (b"".join(chunks) if major == 2 else "".join(texts)), pos + 1
        if depth <= 0:
            raise _bad("nested too deeply", start)
        if major == 4:
            items: list[object] = []
            while data[pos] != _BREAK:
                self.spend(1, pos)
                value, pos = self.item(pos, depth - 1)
                items.append(value)
            return items, pos + 1
        result: dict[int | str, object] = {}
        while data[pos] != _BREAK:
            self.spend(2, pos)
            pair, pos = self._map(1, pos, depth - 1)
            key = next(iter(pair))
            if key in result:
                raise _bad(f"duplicate map key {key!r:.40}", pos)
            result.update(pair)
        return result, pos + 1


def _text(data: bytes, pos: int, end: int, start: int) -> str:
    try:
        return data[pos:end].decode("utf-8")  # strict: no surrogates, no overlong forms
    except UnicodeDecodeError as exc:
        raise _bad(f"text string is not UTF-8 ({exc.reason})", start) from None


def _kind(value: object) -> str:
    names = {bytes: "a byte string", list: "an array", dict: "a map", float: "a float"}
    if value is None or isinstance(value, bool):
        return repr(value).lower()
    return names.get(type(value), type(value).__name__)


__all__ = ["MAX_DEPTH", "MAX_ITEMS", "Tagged", "loads"]
