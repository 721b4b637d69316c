"""The batch codec: literal vectors, round trips, pycose interop, tampering, strict decoding."""

from __future__ import annotations

import hashlib
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from pycose.algorithms import EdDSA
from pycose.headers import KID, Algorithm
from pycose.keys.curves import Ed25519
from pycose.keys.okp import OKPKey
from pycose.messages.sign1message import Sign1Message

from gateway.batches.format import (
    ChainState,
    build,
    decode,
    digest,
    item_end,
    key_id,
    protected_header,
    public_bytes,
    verify_signature,
)
from gateway.codec.senml import Reading
from gateway.errors import BadBatch, BadSignature
from tests.batches.conftest import RFC8032_PUBLIC, Row, chain, rows

VECTOR_ROWS = [
    Row(1, "aq-07", "pm2_5", "ug/m3", "v", 12.5, 1_700_000_000_250, 0),
    Row(2, "wl-01", "alarm", None, "vb", True, 1_700_000_000_500, 0),
]
#: build(RFC 8032 test key, first batch, VECTOR_ROWS, 1700000001000, gw-1, kec-a).
VECTOR = bytes.fromhex(
    "d2844da20127044821fe31dfa154a261a058aea861760167676174657761796467772d316473697465656b65"
    "632d6163736571016a637265617465645f6d731b0000018bcfe56be864707265764063696473820102677265"
    "636f72647382a400781a75726e3a6465763a73696d70756c3a61712d30373a706d325f35016575672f6d3302"
    "fb402900000000000006fb41d954fc40100000a300781a75726e3a6465763a73696d70756c3a776c2d30313a"
    "616c61726d04f506fb41d954fc402000005840df831293ab815fb020682c59b8636f69bd1a2b05f9172a8a91"
    "9b552334cc651ec50d1a1e925793b8a4a2fc6b124b2bf63db057d0b0ba5a23b5feda5d4664390c"
)


def test_kid_is_first_8_bytes_of_sha256_of_raw_public_key() -> None:
    assert key_id(RFC8032_PUBLIC) == hashlib.sha256(RFC8032_PUBLIC).digest()[:8]
    assert key_id(RFC8032_PUBLIC).hex() == "21fe31dfa154a261"


def test_protected_header_is_alg_eddsa_and_kid() -> None:
    # {1: -8, 4: h'21fe31dfa154a261'}
    assert protected_header(key_id(RFC8032_PUBLIC)) == bytes.fromhex("a201270448") + bytes.fromhex(
        "21fe31dfa154a261"
    )


def test_build_matches_literal_vector(rfc_key: Ed25519PrivateKey) -> None:
    encoded, state = build(
        rfc_key, ChainState(), VECTOR_ROWS, 1_700_000_001_000, gateway="gw-1", site="kec-a"
    )
    assert encoded == VECTOR
    assert state == ChainState(seq=1, prev=hashlib.sha256(VECTOR).digest())


def test_vector_payload_is_the_documented_map() -> None:
    message = cbor2.loads(VECTOR)
    assert message.tag == 18
    protected, unprotected, payload, signature = message.value
    assert cbor2.loads(protected) == {1: -8, 4: bytes.fromhex("21fe31dfa154a261")}
    assert dict(unprotected) == {}
    assert len(signature) == 64
    assert cbor2.loads(payload) == {
        "v": 1,
        "gateway": "gw-1",
        "site": "kec-a",
        "seq": 1,
        "created_ms": 1_700_000_001_000,
        "prev": b"",
        "ids": [1, 2],
        "records": [
            {0: "urn:dev:simpul:aq-07:pm2_5", 1: "ug/m3", 2: 12.5, 6: 1_700_000_000.25},
            {0: "urn:dev:simpul:wl-01:alarm", 4: True, 6: 1_700_000_000.5},
        ],
    }


def test_decode_gives_back_what_was_built() -> None:
    batch = decode(VECTOR)
    assert (batch.gateway, batch.site, batch.seq, batch.created_ms) == (
        "gw-1",
        "kec-a",
        1,
        1_700_000_001_000,
    )
    assert (batch.first_id, batch.last_id, batch.prev, batch.next_key) == (1, 2, b"", None)
    assert batch.kid == key_id(RFC8032_PUBLIC)
    assert batch.digest == digest(VECTOR)
    assert batch.readings == (
        Reading("aq-07", "pm2_5", "ug/m3", "v", 12.5, 1_700_000_000_250),
        Reading("wl-01", "alarm", None, "vb", True, 1_700_000_000_500),
    )
    verify_signature(batch, Ed25519PublicKey.from_public_bytes(RFC8032_PUBLIC))


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("v", 21),
        ("v", -3.25),
        ("v", 1e-300),
        ("vs", "ok ✓"),
        ("vb", False),
        ("vd", b"\x00\xff"),
        ("s", 42.5),
    ],
)
def test_every_value_kind_round_trips(key: Ed25519PrivateKey, kind: str, value: Any) -> None:
    row = Row(7, "b1", "q", None, kind, value, 1_600_000_000_001, 0)
    encoded, _ = build(key, ChainState(), [row], 1, gateway="g", site="s")
    (reading,) = decode(encoded).readings
    assert reading == Reading("b1", "q", None, kind, value, 1_600_000_000_001)  # type: ignore[arg-type]
    assert type(reading.value) is type(value)


def test_millisecond_times_survive_float_seconds(key: Ed25519PrivateKey) -> None:
    times = [0, 1, 999, 1_700_000_000_001, 1_700_000_000_999, 253_402_300_799_999]
    batch_rows = [Row(i + 1, "b1", "q", None, "v", 1, t, 0) for i, t in enumerate(times)]
    encoded, _ = build(key, ChainState(), batch_rows, 1, gateway="g", site="s")
    assert [r.time_ms for r in decode(encoded).readings] == times


def test_chain_links_each_batch_to_the_digest_of_the_one_before(key: Ed25519PrivateKey) -> None:
    batches, state = chain(key, 3)
    decoded = [decode(b) for b in batches]
    assert [b.seq for b in decoded] == [1, 2, 3]
    assert decoded[0].prev == b""
    assert decoded[1].prev == hashlib.sha256(batches[0]).digest()
    assert decoded[2].prev == hashlib.sha256(batches[1]).digest()
    assert state == ChainState(seq=3, prev=digest(batches[2]))
    assert [(b.first_id, b.last_id) for b in decoded] == [(1, 3), (4, 6), (7, 9)]


def test_chain_state_round_trips_for_storage() -> None:
    state = ChainState(seq=41, prev=bytes(range(32)), announced=bytes(32))
    assert ChainState.decode(state.encode()) == state
    with pytest.raises(BadBatch):
        ChainState.decode(b"\xa0")


def test_next_key_is_carried_in_the_signed_payload(key: Ed25519PrivateKey) -> None:
    new = public_bytes(Ed25519PrivateKey.generate())
    encoded, state = build(key, ChainState(), rows(1), 1, gateway="g", site="s", next_key=new)
    assert decode(encoded).next_key == new
    assert state.announced == new


def test_build_refuses_an_empty_batch_and_mismatched_values(key: Ed25519PrivateKey) -> None:
    with pytest.raises(ValueError, match="at least one"):
        build(key, ChainState(), [], 1, gateway="g", site="s")
    bad = Row(5, "b1", "q", None, "v", "12", 1, 0)
    with pytest.raises(ValueError, match="outbox row 5"):
        build(key, ChainState(), [bad], 1, gateway="g", site="s")
    with pytest.raises(ValueError, match="outbox row 6"):
        build(
            key, ChainState(), [Row(6, "b1", "q", None, "v", True, 1, 0)], 1, gateway="g", site="s"
        )


# Interoperability: another COSE implementation must accept what simpul signs.


def _pycose_decode(encoded: bytes) -> Sign1Message:
    # Sign1Message.decode() checks for a list, and cbor2 6 decodes a tag's array as a tuple
    # (pycose issue #141); hand pycose the same four items as a list instead.
    protected, unprotected, payload, signature = cbor2.loads(encoded).value
    message: Sign1Message = Sign1Message.from_cose_obj(
        [protected, dict(unprotected), payload, signature], True
    )
    return message


def test_batch_made_by_simpul_verifies_with_pycose(key: Ed25519PrivateKey) -> None:
    encoded, _ = build(key, ChainState(), rows(50), 1, gateway="gw-1", site="kec-a")
    message = _pycose_decode(encoded)
    message.key = OKPKey(crv=Ed25519, x=public_bytes(key))
    assert message.verify_signature()
    assert message.phdr[Algorithm] is EdDSA
    assert message.phdr[KID] == key_id(public_bytes(key))


def test_pycose_rejects_a_simpul_batch_with_another_key(key: Ed25519PrivateKey) -> None:
    encoded, _ = build(key, ChainState(), rows(5), 1, gateway="gw-1", site="kec-a")
    message = _pycose_decode(encoded)
    message.key = OKPKey(crv=Ed25519, x=public_bytes(Ed25519PrivateKey.generate()))
    assert not message.verify_signature()


def _pycose_sign(signer: Ed25519PrivateKey, kid: bytes, payload: bytes) -> bytes:
    secret = signer.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    message = Sign1Message(phdr={Algorithm: EdDSA, KID: kid}, payload=payload)
    message.key = OKPKey(crv=Ed25519, d=secret, x=public_bytes(signer))
    encoded: bytes = message.encode()
    return encoded


def test_pycose_signed_batch_verifies_with_simpul(key: Ed25519PrivateKey) -> None:
    encoded, _ = build(key, ChainState(), rows(5), 1, gateway="gw-1", site="kec-a")
    payload = decode(encoded).payload
    batch = decode(_pycose_sign(key, key_id(public_bytes(key)), payload))
    verify_signature(batch, key.public_key())
    assert batch.readings == decode(encoded).readings


def test_pycose_signed_batch_with_a_different_key_fails_simpul_verify(
    key: Ed25519PrivateKey,
) -> None:
    encoded, _ = build(key, ChainState(), rows(5), 1, gateway="gw-1", site="kec-a")
    forged = _pycose_sign(
        Ed25519PrivateKey.generate(), key_id(public_bytes(key)), decode(encoded).payload
    )
    with pytest.raises(BadSignature, match="batch 1 of gw-1"):
        verify_signature(decode(forged), key.public_key())


# Tampering: any changed byte is caught, by the signature or by the strict decoder.


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def _tampered_is_caught(encoded: bytes, public: Any) -> bool:
    try:
        verify_signature(decode(encoded), public)
    except (BadBatch, BadSignature):
        return True
    return False


@pytest.mark.parametrize("part", ["protected", "payload", "signature"])
def test_flipping_a_byte_is_detected(rfc_key: Ed25519PrivateKey, part: str) -> None:
    batch = decode(VECTOR)
    start = {
        "protected": VECTOR.index(batch.protected),
        "payload": VECTOR.index(batch.payload),
        "signature": VECTOR.index(batch.signature),
    }[part]
    length = len(getattr(batch, part))
    for index in range(start, start + length):
        assert _tampered_is_caught(_flip(VECTOR, index), rfc_key.public_key()), index


def test_every_single_byte_flip_anywhere_is_detected(rfc_key: Ed25519PrivateKey) -> None:
    for index in range(len(VECTOR)):
        assert _tampered_is_caught(_flip(VECTOR, index), rfc_key.public_key()), index


def test_wrong_key_fails_verification(key: Ed25519PrivateKey) -> None:
    with pytest.raises(BadSignature):
        verify_signature(decode(VECTOR), key.public_key())


# Strict decoding: hostile or foreign input gets a clear BadBatch, never a crash.


def _sign1(protected: bytes, payload: bytes, *, tag: int = 18, unprotected: Any = None) -> bytes:
    body = [protected, {} if unprotected is None else unprotected, payload, bytes(64)]
    return cbor2.dumps(cbor2.CBORTag(tag, body))


_GOOD_PROTECTED = protected_header(bytes(8))


def _payload(**changes: Any) -> bytes:
    body: dict[str, Any] = {
        "v": 1,
        "gateway": "g",
        "site": "s",
        "seq": 1,
        "created_ms": 1,
        "prev": b"",
        "ids": [1, 1],
        "records": [{0: "urn:dev:simpul:b1:q", 2: 1, 6: 1.0}],
    }
    for name, value in changes.items():
        if value is None:
            del body[name]
        else:
            body[name] = value
    return cbor2.dumps(body)


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        (b"", "truncated"),
        (b"\xff", "break outside"),
        (VECTOR[:-1], "truncated"),
        (VECTOR + b"\x00", "trailing data"),
        (cbor2.dumps([1, 2, 3, 4]), "tag 18"),
        (_sign1(_GOOD_PROTECTED, _payload(), tag=17), "tag 17 is not allowed"),
        (cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b""])), "array of four"),
        (_sign1(cbor2.dumps({1: -7, 4: bytes(8)}), _payload()), "not EdDSA"),
        (_sign1(cbor2.dumps({1: -8}), _payload()), "kid must be 8 bytes"),
        (_sign1(b"\xa1\x01", _payload()), "protected header"),
        (_sign1(_GOOD_PROTECTED, b"\x80"), "payload must be a CBOR map"),
        (_sign1(_GOOD_PROTECTED, _payload(v=2)), "version 2"),
        (_sign1(_GOOD_PROTECTED, _payload(seq=0)), "seq must be 1 or more"),
        (_sign1(_GOOD_PROTECTED, _payload(seq=-1)), "'seq' must be a non-negative integer"),
        (_sign1(_GOOD_PROTECTED, _payload(seq=None)), "lacks 'seq'"),
        (_sign1(_GOOD_PROTECTED, _payload(gateway=7)), "'gateway' must be a text string"),
        (_sign1(_GOOD_PROTECTED, _payload(seq=2)), "32-byte SHA-256"),
        (_sign1(_GOOD_PROTECTED, _payload(prev=bytes(32))), "batch 1 must have an empty prev"),
        (_sign1(_GOOD_PROTECTED, _payload(ids=[3, 2])), "first <= last"),
        (_sign1(_GOOD_PROTECTED, _payload(extra=1)), "unknown field"),
        (_sign1(_GOOD_PROTECTED, _payload(next_key=b"short")), "next_key"),
        (_sign1(_GOOD_PROTECTED, _payload(records=[])), "must not be empty"),
        (_sign1(_GOOD_PROTECTED, _payload(records=[[1]])), "record 0: must be a map"),
        (
            _sign1(_GOOD_PROTECTED, _payload(records=[{0: "b1:q", 2: 1, 6: 1.0}])),
            "name must start",
        ),
        (
            _sign1(_GOOD_PROTECTED, _payload(records=[{0: "urn:dev:simpul:b1", 2: 1, 6: 1.0}])),
            "is not urn:dev:simpul:<board>:<name>",
        ),
        (
            _sign1(_GOOD_PROTECTED, _payload(records=[{0: "urn:dev:simpul:b1:q", 2: 1}])),
            "time t must be a number",
        ),
        (
            _sign1(
                _GOOD_PROTECTED,
                _payload(records=[{0: "urn:dev:simpul:b1:q", 2: 1, 6: float("nan")}]),
            ),
            "float nan is not finite",
        ),
        (
            _sign1(_GOOD_PROTECTED, _payload(records=[{0: "urn:dev:simpul:b1:q", 2: 1, 6: -1.0}])),
            "not a Unix time",
        ),
        (
            _sign1(
                _GOOD_PROTECTED, _payload(records=[{0: "urn:dev:simpul:b1:q", 2: 1, 3: "x", 6: 1}])
            ),
            "exactly one of",
        ),
        (
            _sign1(_GOOD_PROTECTED, _payload(records=[{0: "urn:dev:simpul:b1:q", 4: 1, 6: 1}])),
            "vb must not be a int",
        ),
        (
            _sign1(
                _GOOD_PROTECTED, _payload(records=[{0: "urn:dev:simpul:b1:q", -2: "x", 2: 1, 6: 1}])
            ),
            "no place in a resolved record",
        ),
        (_sign1(_GOOD_PROTECTED, b"\xa2\x61v\x01\x61v\x01"), "not valid CBOR"),
        (b"\x9f" * 40, "nested too deeply"),
        (b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff", "truncated"),
    ],
)
def test_decode_names_what_is_wrong(encoded: bytes, message: str) -> None:
    with pytest.raises(BadBatch, match=message):
        decode(encoded)


def test_item_end_finds_the_end_of_each_item_in_a_sequence() -> None:
    sequence = VECTOR + cbor2.dumps([1, {"a": b"xy"}]) + b"\x9f\x01\xff"
    first = item_end(sequence)
    second = item_end(sequence, first)
    assert (first, second, item_end(sequence, second)) == (
        len(VECTOR),
        len(VECTOR) + 8,
        len(sequence),
    )
