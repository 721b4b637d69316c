"""The strict JSON decoder (RFC 8259) for SenML-JSON packs and JSON health reports.

A pure function, the JSON counterpart of :mod:`gateway.codec.cbor` with the same profile, so
a board gets the same answer whichever of the two it speaks. Whatever the input,
:func:`loads` returns or raises :class:`gateway.errors.BadPayload`
(``"not valid JSON: ..."``), nothing else.

* the bytes must be UTF-8 (RFC 8259 §8.1): no BOM, no UTF-16, no encoded surrogates;
* no string, key or value, may hold a lone surrogate (``"\\ud800"``): it could not be stored,
  logged or sent on;
* an object may not repeat a name (RFC 8259 §4 leaves the meaning open; we refuse it);
* numbers: integers must fit in 64 signed bits, floats must be finite (``1e999``, ``NaN``
  and ``Infinity`` are refused);
* nesting and the number of values are bounded (``max_depth``, ``max_items``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Final

from gateway.errors import BadPayload

#: Default deepest nesting of arrays and objects.
MAX_DEPTH: Final = 16
#: Default most values in one document (object members count a name and a value).
MAX_ITEMS: Final = 1 << 20

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# A \uXXXX escape of a UTF-16 surrogate; without one, a strictly decoded text holds none.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def loads(data: bytes, *, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS) -> object:
    """Decode one JSON document from UTF-8 ``data`` under the rules above."""
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadPayload(f"not valid JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object,
            parse_int=_int,
            parse_float=_float,
            parse_constant=_constant,
        )
    except BadPayload:
        raise
    except (ValueError, RecursionError) as exc:
        raise BadPayload(f"not valid JSON: {_short(exc)}") from None
    _check(value, max_depth, [max_items], surrogates=_SURROGATE_ESCAPE.search(text) is not None)
    return value


def _object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise BadPayload(f"not valid JSON: duplicate name {name!r:.40} in an object")
            seen.add(name)
    return result


def _int(text: str) -> int:
    # Beyond 19 digits nothing fits in 64 bits; checked first, so int() never sees 10**5 digits.
    if len(text.lstrip("-")) > 19 or not _INT64_MIN <= (number := int(text)) <= _INT64_MAX:
        raise BadPayload(f"not valid JSON: integer {text:.30} does not fit in 64 signed bits")
    return number


def _float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise BadPayload(f"not valid JSON: number {text:.30} is not a finite float")
    return number


def _constant(text: str) -> float:
    raise BadPayload(f"not valid JSON: {text} is not a number")


def _check(value: object, depth: int, budget: list[int], *, surrogates: bool) -> None:
    """Nesting and size limits; lone surrogates, if the text had any surrogate escape."""
    budget[0] -= 1
    if budget[0] < 0:
        raise BadPayload("not valid JSON: more values than this format allows")
    if type(value) is dict:
        if depth <= 0:
            raise BadPayload("not valid JSON: nested too deeply")
        budget[0] -= len(value)
        for key, item in value.items():
            if surrogates:
                _no_surrogate(key)
            _check(item, depth - 1, budget, surrogates=surrogates)
    elif type(value) is list:
        if depth <= 0:
            raise BadPayload("not valid JSON: nested too deeply")
        for item in value:
            _check(item, depth - 1, budget, surrogates=surrogates)
    elif surrogates and type(value) is str:
        _no_surrogate(value)


def _no_surrogate(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadPayload(
            f"not valid JSON: string {text!r:.40} holds a lone surrogate (not Unicode text)"
        ) from None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 80 else text[:77] + "..."


__all__ = ["MAX_DEPTH", "MAX_ITEMS", "loads"]
