"""Signed, hash-chained batches of readings: the format the gateway sends upstream.

Pure functions between bytes and plain objects: no files, sockets or clocks (the caller
passes ``now_ms`` and the chain state). A batch is a COSE_Sign1 (RFC 9052 §4.2, CBOR tag 18)
signed with EdDSA over Ed25519 (alg -8)::

    18([ protected: bstr .cbor {1: -8, 4: kid},     ; alg EdDSA, kid = SHA-256(pub)[:8]
         unprotected: {},
         payload: bstr .cbor {
             "v": 1,                  ; format version
             "gateway": tstr, "site": tstr,
             "seq": uint,             ; 1, 2, ... per gateway, never reused
             "created_ms": uint,      ; when the gateway built it, Unix ms
             "prev": bstr,            ; SHA-256 of the previous batch's COSE bytes; b"" for seq 1
             "ids": [first, last],    ; outbox ids covered
             "records": [* record],   ; SenML-CBOR records, resolved (RFC 8428 §4.6)
             ? "next_key": bstr,      ; raw Ed25519 key signing the batches after this one
         },
         signature: bstr ])

Each record carries its full name ``urn:dev:simpul:<board>:<name>`` (label 0), the absolute
time in seconds as a float (label 6), the unit if any (label 1), and exactly one of
``v``/``vs``/``vb``/``vd``/``s`` (labels 2, 3, 4, 8, 5). No base fields: a consumer needs no
SenML resolution logic, and any COSE library can check the signature (no external AAD).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.codec import cbor, cose
from gateway.codec.senml import BOARD_URN_PREFIX, Reading, Value, ValueKind, is_board_id
from gateway.errors import BadBatch, BadPayload, BadSignature, CoseError

FORMAT_VERSION: Final = 1
KID_BYTES: Final = 8
DIGEST_BYTES: Final = 32
PUBLIC_KEY_BYTES: Final = 32
#: Largest batch accepted by :func:`decode`, in bytes; far above what the gateway builds.
MAX_BATCH_BYTES: Final = 64 * 1024 * 1024

# RFC 8428 §6: SenML-CBOR labels of the fields a resolved record uses.
_N, _U, _V, _VS, _VB, _S, _T, _VD = 0, 1, 2, 3, 4, 5, 6, 8
_VALUE_LABEL: dict[str, int] = {"v": _V, "vs": _VS, "vb": _VB, "s": _S, "vd": _VD}
_LABEL_KIND: dict[int, ValueKind] = {_V: "v", _VS: "vs", _VB: "vb", _S: "s", _VD: "vd"}
_RECORD_LABELS = frozenset({_N, _U, _T, *_LABEL_KIND})
# Python types each kind may hold (bool is not a number here, nor int a bool).
_VALUE_TYPES: dict[str, tuple[type, ...]] = {
    "v": (int, float),
    "s": (int, float),
    "vs": (str,),
    "vb": (bool,),
    "vd": (bytes,),
}
_PAYLOAD_KEYS = frozenset(
    {"v", "gateway", "site", "seq", "created_ms", "prev", "ids", "records", "next_key"}
)
_MAX_TIME_S: Final = 253_402_300_800  # 10000-01-01T00:00:00Z


class BatchRow(Protocol):
    """What :func:`build` reads from an outbox row (``gateway.store.schema.OutboxRow`` fits)."""

    @property
    def id(self) -> int: ...
    @property
    def board_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def unit(self) -> str | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def value(self) -> Value: ...
    @property
    def time_ms(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ChainState:
    """Where a gateway's chain stands: what the next batch must follow.

    The caller persists it together with the batch it came with, so that a restart neither
    reuses a sequence number nor breaks the chain.
    """

    #: Sequence number of the last batch built; 0 before the first.
    seq: int = 0
    #: :func:`digest` of the last batch; empty before the first.
    prev: bytes = b""
    #: Raw public key the last batch announced as ``next_key``; empty if none.
    announced: bytes = b""

    def encode(self) -> bytes:
        """CBOR, for storing beside the outbox."""
        return cbor2.dumps({"seq": self.seq, "prev": self.prev, "announced": self.announced})

    @classmethod
    def decode(cls, data: bytes) -> ChainState:
        """The inverse of :meth:`encode`; raises :class:`BadBatch` on anything else."""
        raw = _loads(data, "stored chain state")
        if not isinstance(raw, dict) or raw.keys() != {"seq", "prev", "announced"}:
            raise BadBatch("not a stored chain state: expected seq, prev and announced")
        state = cls(seq=raw["seq"], prev=raw["prev"], announced=raw["announced"])
        if not (
            type(state.seq) is int
            and state.seq >= 0
            and isinstance(state.prev, bytes)
            and isinstance(state.announced, bytes)
        ):
            raise BadBatch("not a stored chain state: wrong field types")
        return state


@dataclass(frozen=True, slots=True)
class Batch:
    """A decoded batch. Nothing in it is trusted until :func:`verify_signature` passes."""

    #: The complete COSE_Sign1 bytes, as received.
    encoded: bytes
    #: SHA-256 of :attr:`encoded`: what the next batch's ``prev`` names.
    digest: bytes
    protected: bytes
    payload: bytes
    signature: bytes
    kid: bytes
    gateway: str
    site: str
    seq: int
    created_ms: int
    prev: bytes
    first_id: int
    last_id: int
    readings: tuple[Reading, ...]
    next_key: bytes | None


#: The raw 32-byte public key of a key, and a raw key's kid: as everything simpul signs.
public_bytes = cose.public_bytes
key_id = cose.key_id


def digest(encoded: bytes) -> bytes:
    """SHA-256 of a batch's complete encoded bytes, as the next batch's ``prev`` carries it."""
    return hashlib.sha256(encoded).digest()


def protected_header(kid: bytes) -> bytes:
    """The encoded protected header ``{1: -8, 4: kid}``."""
    return cbor2.dumps({cose.ALG: cose.EDDSA, cose.KID: kid})


def build(
    signing_key: Ed25519PrivateKey,
    chain: ChainState,
    rows: Sequence[BatchRow],
    now_ms: int,
    *,
    gateway: str,
    site: str,
    next_key: bytes | None = None,
) -> tuple[bytes, ChainState]:
    """Sign ``rows`` (in outbox order) as the batch after ``chain``; return it and the new state.

    ``next_key`` (a raw public key) announces the key that signs the batches after this one.
    Raises :class:`ValueError` for an empty batch or a row whose value does not fit its kind.
    """
    if not rows:
        raise ValueError("a batch needs at least one reading")
    if next_key is not None and len(next_key) != PUBLIC_KEY_BYTES:
        raise ValueError(f"next_key must be a raw {PUBLIC_KEY_BYTES}-byte Ed25519 public key")
    records = _records(rows)
    seq = chain.seq + 1
    body: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "gateway": gateway,
        "site": site,
        "seq": seq,
        "created_ms": now_ms,
        "prev": chain.prev,
        "ids": [rows[0].id, rows[-1].id],
        "records": records,
    }
    if next_key is not None:
        body["next_key"] = next_key
    payload = cbor2.dumps(body)
    encoded = cose.sign(signing_key, payload, kid=key_id(public_bytes(signing_key)))
    return encoded, ChainState(seq=seq, prev=digest(encoded), announced=next_key or b"")


def _records(rows: Sequence[BatchRow]) -> list[dict[int, Any]]:
    # The hot loop of signing a backlog: plain dicts with int keys for cbor2's C encoder.
    value_label, value_types, prefix = _VALUE_LABEL, _VALUE_TYPES, BOARD_URN_PREFIX
    records: list[dict[int, Any]] = []
    append = records.append
    for row in rows:
        kind, value = row.kind, row.value
        label = value_label.get(kind)
        if label is None or type(value) not in value_types[kind]:
            raise ValueError(f"outbox row {row.id}: a {type(value).__name__} is no {kind!r} value")
        unit = row.unit
        if unit:
            append(
                {
                    _N: f"{prefix}{row.board_id}:{row.name}",
                    _U: unit,
                    label: value,
                    _T: row.time_ms / 1000,
                }
            )
        else:
            append({_N: f"{prefix}{row.board_id}:{row.name}", label: value, _T: row.time_ms / 1000})
    return records


def verify_signature(batch: Batch, public_key: Ed25519PublicKey) -> None:
    """Check the batch's signature with ``public_key``; raise :class:`BadSignature` if wrong."""
    try:
        public_key.verify(batch.signature, cose.sig_structure(batch.protected, batch.payload))
    except InvalidSignature:
        raise BadSignature(
            f"batch {batch.seq} of {batch.gateway}: signature does not verify"
        ) from None


def decode(encoded: bytes) -> Batch:
    """Decode one batch strictly; raise :class:`BadBatch` naming the first thing wrong.

    Checks structure only: the signature is :func:`verify_signature`'s job. Every CBOR
    item goes through :func:`gateway.codec.cbor.loads` (no duplicate keys, UTF-8 text,
    64-bit integers, finite floats, no tag but COSE_Sign1's), whatever the bytes.
    """
    if len(encoded) > MAX_BATCH_BYTES:
        raise BadBatch(f"batch of {len(encoded)} bytes exceeds {MAX_BATCH_BYTES}")
    try:
        message = cose.decode(encoded)  # the envelope: tag, structure, headers, alg
    except CoseError as exc:
        raise BadBatch(str(exc)) from None
    protected, payload, signature = message.protected_bytes, message.payload, message.signature
    kid = message.kid
    if kid is None or len(kid) != KID_BYTES:
        raise BadBatch(f"protected header kid must be {KID_BYTES} bytes")
    body = _loads(payload, "payload")
    if not isinstance(body, dict):
        raise BadBatch("payload must be a CBOR map")
    unknown = [k for k in body if k not in _PAYLOAD_KEYS]
    if unknown:
        raise BadBatch(f"payload has unknown field(s) {', '.join(map(repr, unknown))[:80]}")
    version = _field(body, "v", int)
    if version != FORMAT_VERSION:
        raise BadBatch(f"batch format version {version} is not {FORMAT_VERSION}")
    gateway = _field(body, "gateway", str)
    site = _field(body, "site", str)
    seq = _field(body, "seq", int)
    created_ms = _field(body, "created_ms", int)
    prev = _field(body, "prev", bytes)
    if seq < 1:
        raise BadBatch(f"seq must be 1 or more, got {seq}")
    if seq == 1 and prev:
        raise BadBatch("batch 1 must have an empty prev")
    if seq > 1 and len(prev) != DIGEST_BYTES:
        raise BadBatch(f"prev must be a {DIGEST_BYTES}-byte SHA-256 digest")
    ids = _field(body, "ids", list)
    if len(ids) != 2 or not all(type(i) is int for i in ids) or not 0 <= ids[0] <= ids[1]:
        raise BadBatch("ids must be [first, last] outbox ids, first <= last")
    next_key = body.get("next_key")
    if next_key is not None and (not isinstance(next_key, bytes) or len(next_key) != 32):
        raise BadBatch("next_key must be a raw 32-byte Ed25519 public key")
    records = _field(body, "records", list)
    if not records:
        raise BadBatch("records must not be empty")
    readings = tuple(_reading(record, index) for index, record in enumerate(records))
    return Batch(
        encoded=encoded,
        digest=digest(encoded),
        protected=protected,
        payload=payload,
        signature=signature,
        kid=kid,
        gateway=gateway,
        site=site,
        seq=seq,
        created_ms=created_ms,
        prev=prev,
        first_id=ids[0],
        last_id=ids[1],
        readings=readings,
        next_key=next_key,
    )


def _loads(data: bytes, what: str, tags: tuple[int, ...] = ()) -> Any:
    try:
        return cbor.loads(data, tags=tags, max_items=MAX_BATCH_BYTES)
    except BadPayload as exc:
        raise BadBatch(f"{what}: {exc}") from None


def _field(body: dict[Any, Any], key: str, kind: type) -> Any:
    if key not in body:
        raise BadBatch(f"payload lacks {key!r}")
    value: Any = body[key]
    if type(value) is not kind or (isinstance(value, int) and value < 0):
        raise BadBatch(f"payload {key!r} must be a {_KIND_NAMES.get(kind, kind.__name__)}")
    return value


_KIND_NAMES = {int: "non-negative integer", str: "text string", bytes: "byte string", list: "array"}


def _reading(record: object, index: int) -> Reading:
    if not isinstance(record, dict):
        raise BadBatch(f"record {index}: must be a map")
    for label in record:
        if label not in _RECORD_LABELS:
            raise BadBatch(f"record {index}: label {label!r:.40} has no place in a resolved record")
    full_name = record.get(_N)
    if not isinstance(full_name, str) or not full_name.startswith(BOARD_URN_PREFIX):
        raise BadBatch(f"record {index}: name must start with {BOARD_URN_PREFIX!r}")
    board_id, sep, name = full_name[len(BOARD_URN_PREFIX) :].partition(":")
    if not sep or not name or not is_board_id(board_id):
        raise BadBatch(
            f"record {index}: name {full_name!r:.80} is not urn:dev:simpul:<board>:<name>"
        )
    unit = record.get(_U)
    if unit is not None and not isinstance(unit, str):
        raise BadBatch(f"record {index}: unit must be text")
    t = record.get(_T)
    if not isinstance(t, int | float) or isinstance(t, bool):
        raise BadBatch(f"record {index}: time t must be a number of seconds")
    # NaN, infinities and times past year 9999 are no Unix times.
    time_ms = round(t * 1000) if 0 <= t < _MAX_TIME_S else -1
    if time_ms < 0:
        raise BadBatch(f"record {index}: time t {t!r} is not a Unix time")
    values = [label for label in _LABEL_KIND if label in record]
    if len(values) != 1:
        raise BadBatch(f"record {index}: needs exactly one of v, vs, vb, vd, s")
    kind = _LABEL_KIND[values[0]]
    value = record[values[0]]
    if type(value) not in _VALUE_TYPES[kind]:
        raise BadBatch(f"record {index}: {kind} must not be a {type(value).__name__}")
    return Reading(board_id, name, unit, kind, value, time_ms)


def item_end(data: bytes, start: int = 0) -> int:
    """Offset just past the one CBOR data item that begins at ``start``, without decoding it.

    Raises :class:`BadBatch` if the item is malformed or runs past the end of ``data``.
    """
    position = start

    def take(count: int) -> bytes:
        nonlocal position
        chunk = data[position : position + count]
        if len(chunk) != count:
            raise BadBatch("truncated CBOR item")
        position += count
        return chunk

    skip_item(take)
    return position


#: Deepest nesting :func:`skip_item` follows; batches nest four deep.
MAX_NESTING: Final = 32


def skip_item(take: Callable[[int], bytes]) -> None:
    """Read one CBOR data item (RFC 8949) through ``take(n)``, checking only its framing.

    ``take`` returns exactly ``n`` bytes or raises. Used to find where items of a CBOR
    sequence end, since a decoder may read ahead.
    """
    # Each entry: how many items remain at that nesting level; -1 for indefinite length.
    remaining = [1]
    while remaining:
        top = remaining[-1]
        if top == 0:
            remaining.pop()
            continue
        initial = take(1)[0]
        if initial == 0xFF:
            if top != -1:
                raise BadBatch("CBOR break outside an indefinite-length item")
            remaining.pop()
            continue
        if top > 0:
            remaining[-1] = top - 1
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            argument = info
        elif info <= 27:
            argument = int.from_bytes(take(1 << (info - 24)), "big")
        elif info == 31 and major in (2, 3, 4, 5):
            remaining.append(-1)
            argument = -1
        else:
            raise BadBatch(f"malformed CBOR: initial byte 0x{initial:02x}")
        if argument < 0:
            pass
        elif major in (2, 3):
            if argument > MAX_BATCH_BYTES:
                raise BadBatch(f"CBOR string of {argument} bytes is too long")
            take(argument)
        elif major == 4 and argument:
            remaining.append(argument)
        elif major == 5 and argument:
            remaining.append(2 * argument)
        elif major == 6:
            remaining.append(1)
        if len(remaining) > MAX_NESTING:
            raise BadBatch(f"CBOR nested deeper than {MAX_NESTING}")


__all__ = [
    "Batch",
    "BatchRow",
    "ChainState",
    "build",
    "decode",
    "digest",
    "item_end",
    "key_id",
    "protected_header",
    "public_bytes",
    "skip_item",
    "verify_signature",
]
