"""What happens to a board's request, as plain functions.

The CoAP resources check what is cheap to check (size, queries, content-format) and pass
the raw payload to the writer process, which decodes it with :func:`decode_readings` and
stores the result in one piece: a request is all-or-nothing, and nothing reaches the store
from a request that is refused.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.codec import cbor, strict_json
from gateway.codec.senml import Reading, decode_senml_cbor, decode_senml_json, is_board_id
from gateway.config import LimitsConfig
from gateway.errors import (
    BadPayload,
    BadQuery,
    BoardMismatch,
    PayloadTooLarge,
    UnsupportedContentFormat,
)
from gateway.ota.report import ota_report
from gateway.store.writer import SequenceRange

#: Content-Formats (RFC 7252 §12.3 registry) the resources accept.
SENML_CBOR = 112
SENML_JSON = 110
CBOR = 60
JSON = 50

READINGS_FORMATS = (SENML_CBOR, SENML_JSON)
HEALTH_FORMATS = (CBOR, JSON)

# Sequence numbers beyond this are surely garbage (and would not fit SQLite's INTEGER).
_MAX_SEQ = 2**53
_MAX_SEQ_DIGITS = len(str(_MAX_SEQ))
# Health maps are small and flat-ish; anything deeper or larger is not a health report.
_MAX_HEALTH_DEPTH = 8
_MAX_HEALTH_ITEMS = 4096


@dataclass
class Counters:
    """What this gateway process has done since it started (not persisted)."""

    readings_stored: int = 0
    duplicates: int = 0
    #: Requests refused, by reason (``bad_payload``, ``too_large``...).
    refused: Counter[str] = field(default_factory=Counter)


def check_size(length: int, limits: LimitsConfig) -> None:
    """Refuse a body (or a Block1 transfer heading) beyond ``max_request_bytes``."""
    if length > limits.max_request_bytes:
        raise PayloadTooLarge(
            f"request body of {length} bytes exceeds {limits.max_request_bytes}",
            limit=limits.max_request_bytes,
        )


def parse_sequence_query(queries: Sequence[str]) -> SequenceRange | None:
    """Read the ``s=<first record seq>&n=<record count>`` URI queries, if given (both or none).

    Other queries are ignored, so boards can add hints later without breaking this gateway.
    Each of ``s`` and ``n`` may appear once: a request means one range or is refused.
    """
    found: dict[str, int] = {}
    for query in queries:
        key, sep, text = query.partition("=")
        if key not in ("s", "n"):
            continue
        if key in found:
            raise BadQuery(f"query {key} given more than once")
        if (
            not sep
            or not text.isascii()
            or not text.isdigit()
            or len(text) > _MAX_SEQ_DIGITS  # before int(), which is slow on long digit strings
            or int(text) > _MAX_SEQ
        ):
            raise BadQuery(f"query {key} must be an integer 0..2**53, got {query!r:.40}")
        found[key] = int(text)
    if not found:
        return None
    if set(found) != {"s", "n"}:
        raise BadQuery("queries s (first sequence number) and n (count) go together")
    if found["n"] < 1:
        raise BadQuery("query n (record count) must be at least 1")
    return SequenceRange(first=found["s"], count=found["n"])


def check_readings_format(content_format: int | None) -> int:
    """The content-format of a readings request, if ``/readings`` accepts it."""
    if content_format is None or content_format not in READINGS_FORMATS:
        raise UnsupportedContentFormat(
            f"content-format {content_format} not accepted; use 112 (SenML-CBOR) or 110"
        )
    return content_format


def decode_readings(
    payload: bytes,
    content_format: int,
    seq: SequenceRange | None,
    received_ms: int,
    limits: LimitsConfig,
) -> list[Reading]:
    """Decode a SenML pack received at ``received_ms``; raises a :class:`GatewayError`."""
    max_records = limits.max_records_per_request
    if content_format == SENML_CBOR:
        readings = decode_senml_cbor(payload, now_ms=received_ms, max_records=max_records)
    elif content_format == SENML_JSON:
        readings = decode_senml_json(payload, now_ms=received_ms, max_records=max_records)
    else:
        check_readings_format(content_format)
        raise AssertionError("unreachable")
    if seq is not None and any(r.board_id != readings[0].board_id for r in readings):
        raise BadQuery("sequence queries need a pack from a single board")
    return readings


def check_board(readings: list[Reading], board_id: str) -> None:
    """Raise :class:`BoardMismatch` unless every reading is ``board_id``'s (the board whose
    OSCORE keys protected the request)."""
    for reading in readings:
        if reading.board_id != board_id:
            raise BoardMismatch(
                f"keys of {board_id} cannot send readings of {reading.board_id[:40]!r}"
            )


def decode_health(payload: bytes, content_format: int | None) -> tuple[str, dict[str, Any]]:
    """Decode a health report (CBOR or JSON map with text keys); returns (board id, map).

    The strict decoders refuse duplicate keys, text that is not Unicode, integers beyond 64
    bits, non-finite floats, tags, and reports nested or sized beyond a health report's.
    Raises a :class:`GatewayError` for anything else, whatever the bytes.
    """
    if content_format == CBOR:
        report = cbor.loads(payload, max_depth=_MAX_HEALTH_DEPTH, max_items=_MAX_HEALTH_ITEMS)
    elif content_format == JSON:
        report = strict_json.loads(
            payload, max_depth=_MAX_HEALTH_DEPTH, max_items=_MAX_HEALTH_ITEMS
        )
    else:
        raise UnsupportedContentFormat(
            f"content-format {content_format} not accepted; use 60 (CBOR) or 50 (JSON)"
        )
    if type(report) is not dict:
        raise BadPayload(f"health report must be a map, got {type(report).__name__}")
    board_id = report.get("board")
    if not is_board_id(board_id):
        raise BadPayload(f"health report needs a valid 'board' id, got {board_id!r:.60}")
    _check_jsonable(report, "health")
    ota_report(report)  # a malformed ota field is refused here, named
    assert isinstance(board_id, str)
    return board_id, report


def _check_jsonable(value: object, where: str) -> None:
    """The registry keeps health as JSON: refuse what JSON cannot carry faithfully.

    The decoders have bounded the depth and made numbers finite and 64-bit already; left are
    keys that are not text and byte strings (CBOR has them, JSON does not).
    """
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise BadPayload(f"{where}: key {key!r:.40} is not text")
            _check_jsonable(item, f"{where[:60]}.{key[:20]}")
    elif type(value) is list:
        for index, item in enumerate(value):
            _check_jsonable(item, f"{where[:60]}[{index}]")
    elif type(value) is bytes:
        raise BadPayload(f"{where}: a byte string cannot be stored (JSON has none)")
