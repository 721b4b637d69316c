"""gateway/codec/cose.py: a literal vector, pycose both ways, and hostile input refused as
the board's firmware/cose.py refuses it."""

from __future__ import annotations

import sys
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from hypothesis import given, settings
from hypothesis import strategies as st
from pycose.algorithms import EdDSA
from pycose.headers import KID, Algorithm, ContentType
from pycose.keys.curves import Ed25519
from pycose.keys.okp import OKPKey
from pycose.messages.sign1message import Sign1Message

from gateway.codec import cose
from gateway.errors import BadSignature, UnknownKey
from tests.release.conftest import FIRMWARE, RFC8032_SECRET

#: b"simpul" signed by RFC 8032 §7.1 TEST 1's key, kid SHA-256(public)[:8]. Ed25519 is
#: deterministic, so these bytes are what the codec makes, forever: 18([h'A2012704 48 kid',
#: {}, h'73696D70756C', signature]).
VECTOR = bytes.fromhex(
    "d2844da20127044821fe31dfa154a261a0467369"
    "6d70756c584040513b72ae0b2d4d3da4195ebcc3202a332309063e444fa855b50efb8a85465983690264"
    "eea1138148b094ebccd972389317cf9cfafce09bc07deeaf67bb9c01"
)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)


def pycose_decode(encoded: bytes) -> Sign1Message:
    # pycose 1.1 cannot decode with cbor2 6 (a tag's array comes as a tuple, pycose issue
    # #141): decode with cbor2 and hand pycose the four items.
    protected, unprotected, payload, signature = cbor2.loads(encoded).value
    message: Sign1Message = Sign1Message.from_cose_obj(
        [protected, dict(unprotected), payload, signature], True
    )
    return message


def pycose_sign(
    signer: Ed25519PrivateKey,
    payload: bytes,
    phdr: dict[Any, Any],
    uhdr: dict[Any, Any] | None = None,
    external_aad: bytes = b"",
) -> bytes:
    secret = signer.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    message = Sign1Message(phdr=phdr, uhdr=uhdr or {}, payload=payload, external_aad=external_aad)
    message.key = OKPKey(crv=Ed25519, d=secret, x=cose.public_bytes(signer))
    encoded: bytes = message.encode()
    return encoded


def resign(key: Ed25519PrivateKey, protected: bytes, unprotected: Any, payload: Any) -> bytes:
    """A COSE_Sign1 with the items given, validly signed (so only the form can refuse it)."""
    to_be_signed = cbor2.dumps(["Signature1", protected, b"", payload])
    signature = key.sign(to_be_signed)
    return bytes(cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected, payload, signature])))


def test_signs_a_literal_vector(key: Ed25519PrivateKey) -> None:
    kid = cose.key_id(cose.public_bytes(key))
    assert kid.hex() == "21fe31dfa154a261"
    signed = cose.sign(key, b"simpul", kid=kid)
    assert signed == VECTOR
    protected = cbor2.dumps({1: -8, 4: kid})
    assert signed[-64:] == key.sign(cose.sig_structure(protected, b"simpul"))
    assert cose.verify(VECTOR, key.public_key()) == ({1: -8, 4: kid}, b"simpul")
    assert cose.decode(VECTOR).kid == kid


def test_what_simpul_signs_verifies_with_pycose(key: Ed25519PrivateKey) -> None:
    kid = cose.key_id(cose.public_bytes(key))
    signed = cose.sign(key, b"a manifest", kid=kid, extra_protected={3: 60})
    message = pycose_decode(signed)
    message.key = OKPKey(crv=Ed25519, x=cose.public_bytes(key))
    assert message.verify_signature()
    assert message.phdr[Algorithm] is EdDSA
    assert message.phdr[KID] == kid
    assert message.payload == b"a manifest"
    message.key = OKPKey(crv=Ed25519, x=cose.public_bytes(Ed25519PrivateKey.generate()))
    assert not message.verify_signature()


@settings(max_examples=20, deadline=None)
@given(st.binary(max_size=3000), st.binary(min_size=1, max_size=16), st.binary(max_size=20))
def test_what_pycose_signs_verifies_here(payload: bytes, kid: bytes, aad: bytes) -> None:
    signer = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)
    signed = pycose_sign(signer, payload, {Algorithm: EdDSA, ContentType: 60}, {KID: kid}, aad)
    protected, got = cose.verify(signed, cose.public_bytes(signer), external_aad=aad)
    assert (protected, got) == ({1: -8, 3: 60}, payload)
    with pytest.raises(BadSignature):
        cose.verify(signed, cose.public_bytes(signer), external_aad=aad + b"!")


def test_what_simpul_signs_verifies_on_the_board(key: Ed25519PrivateKey) -> None:
    sys.path.insert(0, str(FIRMWARE))
    import cose as board_cose  # the firmware's, flat as on the board

    signed = cose.sign(key, b"firmware", kid=b"k1", extra_protected={3: 60})
    assert board_cose.verify(signed, cose.public_bytes(key)) == (
        {1: -8, 4: b"k1", 3: 60},
        b"firmware",
    )


def test_key_set_picks_the_key_by_kid(key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.generate()
    kid = cose.key_id(cose.public_bytes(key))
    signed = cose.sign(key, b"x", kid=kid)
    keys = {kid: key.public_key(), b"other": other.public_key()}
    assert cose.verify(signed, keys)[1] == b"x"
    assert cose.verify(signed, {kid: cose.public_bytes(key)})[1] == b"x"
    with pytest.raises(UnknownKey, match="not trusted"):
        cose.verify(signed, {b"other": other.public_key()})
    # A kid naming a trusted key does not make another key's signature pass.
    forged = cose.sign(other, b"x", kid=kid)
    with pytest.raises(BadSignature, match=f"by key {kid.hex()}"):
        cose.verify(forged, keys)
    unnamed = pycose_sign(key, b"x", {Algorithm: EdDSA})
    with pytest.raises(UnknownKey, match="no kid"):
        cose.verify(unnamed, keys)


def test_sign_refuses_to_override_alg_kid_or_crit(key: Ed25519PrivateKey) -> None:
    for label in (1, 2, 4):
        with pytest.raises(ValueError, match=f"label {label}"):
            cose.sign(key, b"x", kid=b"k", extra_protected={label: 1})
    with pytest.raises(ValueError, match="kid"):
        cose.sign(key, b"x", kid=b"")


def test_every_changed_byte_is_refused(key: Ed25519PrivateKey) -> None:
    signed = cose.sign(key, b"release seq 7", kid=b"k")
    for i in range(len(signed)):
        for flip in (0x01, 0x80):
            tampered = bytearray(signed)
            tampered[i] ^= flip
            with pytest.raises((cose.CoseError, BadSignature)):
                cose.verify(bytes(tampered), key.public_key())


def test_malformed_messages_are_refused_with_the_reason(key: Ed25519PrivateKey) -> None:
    signed = cose.sign(key, b"payload", kid=b"k")
    protected, _, payload, signature = cbor2.loads(signed).value
    hdr = cbor2.dumps({1: -8})
    cases: list[tuple[bytes, str]] = [
        (b"", "not CBOR"),
        (signed + b"\x00", "1 bytes of trailing data"),
        (signed[:-1], "not CBOR"),
        (signed[1:], "untagged"),
        (b"\xd1" + signed[1:], "tag 17 is not allowed"),
        (cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload])), "array of four"),
        (
            cbor2.dumps(cbor2.CBORTag(18, [b"\xa1\x01", {}, payload, signature])),
            "protected header: not CBOR",
        ),
        (cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps([1]), {}, payload, signature])), "not a map"),
        (cbor2.dumps(cbor2.CBORTag(18, ["x", {}, payload, signature])), "not a byte string"),
        (
            cbor2.dumps(cbor2.CBORTag(18, [protected, [], payload, signature])),
            "unprotected header is not a map",
        ),
        (cbor2.dumps(cbor2.CBORTag(18, [protected, {}, None, signature])), "detached payload"),
        (cbor2.dumps(cbor2.CBORTag(18, [protected, {}, "text", signature])), "payload is not"),
        (cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, signature[:63]])), "63 bytes"),
        (
            cbor2.dumps(cbor2.CBORTag(18, [protected, {4: b"k"}, payload, signature])),
            "label 4 in both",
        ),
        (resign(key, cbor2.dumps({1: -8, 2: [99]}), {}, b"p"), "critical headers"),
        (resign(key, hdr, {2: [99]}, b"p"), "critical headers"),
        (resign(key, cbor2.dumps({1: -7}), {}, b"p"), "alg -7, not EdDSA"),
        (resign(key, cbor2.dumps({1: -8.0}), {}, b"p"), "not EdDSA"),
        (resign(key, cbor2.dumps({1: True}), {}, b"p"), "not EdDSA"),
        (resign(key, b"", {1: -8}, b"p"), "only in the unprotected header"),
        (resign(key, cbor2.dumps({4: b"k"}), {}, b"p"), "alg is absent"),
        # Duplicate keys (the second alg is what some decoders keep), tags inside, undefined.
        (resign(key, b"\xa2\x01\x27\x01\x26", {}, b"p"), "duplicate map key"),
        (
            resign(key, cbor2.dumps({1: -8, 5: cbor2.CBORTag(1, 0)}), {}, b"p"),
            "tag 1 is not allowed",
        ),
        (
            resign(key, cbor2.dumps({1: -8}), {7: cbor2.CBORTag(99, 0)}, b"p"),
            "tag 99 is not allowed",
        ),
        (resign(key, cbor2.dumps({1: -8}), {7: cbor2.undefined}, b"p"), "undefined"),
    ]
    for data, reason in cases:
        with pytest.raises(cose.CoseError, match=reason):
            cose.verify(data, key.public_key())


def test_nesting_is_bounded(key: Ed25519PrivateKey) -> None:
    deep: Any = 0
    for _ in range(20):
        deep = [deep]
    with pytest.raises(cose.CoseError, match=r"not CBOR|nesting"):
        cose.verify(resign(key, cbor2.dumps({1: -8}), {9: deep}, b"p"), key.public_key())
    with pytest.raises(cose.CoseError, match=r"not CBOR|nesting"):
        cose.loads(cbor2.dumps(deep))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_hostile_bytes_raise_only_value_errors(data: bytes) -> None:
    with pytest.raises((cose.CoseError, BadSignature)):
        cose.verify(data, Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET).public_key())
