"""cose.py against pycose and hostile input (CPython only; the VM runs mpy/mpy_test_cose.py,
whose literals are remade here)."""

import hashlib
from typing import Any

import cbor2
import cose
import mpy_test_cose as shared
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from errors import BadSignature, CoseFormatError, SignatureError
from hypothesis import given, settings
from hypothesis import strategies as st
from pycose.algorithms import EdDSA
from pycose.headers import KID, Algorithm, ContentType
from pycose.keys.curves import Ed25519
from pycose.keys.okp import OKPKey
from pycose.messages.sign1message import Sign1Message

SEED = hashlib.sha256(b"simpul test release key").digest()


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def pycose_sign(
    seed: bytes,
    payload: bytes,
    phdr: dict[Any, Any],
    uhdr: dict[Any, Any] | None = None,
    external_aad: bytes = b"",
) -> bytes:
    """A COSE_Sign1 made by pycose (it signs and encodes; with cbor2 6 it cannot decode)."""
    message = Sign1Message(phdr=phdr, uhdr=uhdr or {}, payload=payload, external_aad=external_aad)
    public = raw_public(Ed25519PrivateKey.from_private_bytes(seed))
    message.key = OKPKey(crv=Ed25519, d=seed, x=public)
    encoded: bytes = message.encode()
    return encoded


def hand_sign(protected: bytes, unprotected: dict[int, Any], payload: bytes) -> bytes:
    """A COSE_Sign1 assembled with cbor2 and signed with ``cryptography``, headers as given."""
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    to_be_signed = cbor2.dumps(["Signature1", protected, b"", payload])
    body = [protected, unprotected, payload, key.sign(to_be_signed)]
    return cbor2.dumps(cbor2.CBORTag(18, body))


# The shared module's literals are what they say.


def test_shared_literals_are_made_by_pycose_and_cryptography() -> None:
    assert raw_public(Ed25519PrivateKey.from_private_bytes(SEED)) == shared.PUBLIC_KEY
    manifest = cbor2.loads(shared.MANIFEST)
    assert manifest["seq"] == 7
    assert len(shared.MANIFEST) == 296
    kid = shared.KID
    made = pycose_sign(SEED, shared.MANIFEST, {Algorithm: EdDSA, KID: kid})
    assert made == shared.SIGNED_BY_PYCOSE
    wrong_alg = hand_sign(cbor2.dumps({1: -7, 4: kid}), {}, shared.MANIFEST)
    assert wrong_alg == shared.WRONG_ALG_SIGNED
    assert hand_sign(b"", {1: -8, 4: kid}, shared.MANIFEST) == shared.ALG_UNPROTECTED_SIGNED


def test_validly_signed_variants_fail_only_the_header_checks() -> None:
    # Their signatures are good: the refusals in mpy_test_cose come from the alg checks.
    for data in (shared.WRONG_ALG_SIGNED, shared.ALG_UNPROTECTED_SIGNED):
        tag = cbor2.loads(data)
        protected, _, payload, signature = tag.value
        to_be_signed = cbor2.dumps(["Signature1", protected, b"", payload])
        Ed25519PrivateKey.from_private_bytes(SEED).public_key().verify(signature, to_be_signed)


# Interoperability with pycose.


@settings(max_examples=25, deadline=None)
@given(
    st.binary(min_size=32, max_size=32),
    st.binary(max_size=2000),
    st.binary(min_size=1, max_size=16),
    st.binary(max_size=20),
)
def test_sign1_made_by_pycose_verifies(
    seed: bytes, payload: bytes, kid: bytes, external_aad: bytes
) -> None:
    public = raw_public(Ed25519PrivateKey.from_private_bytes(seed))
    encoded = pycose_sign(
        seed, payload, {Algorithm: EdDSA, ContentType: 60}, {KID: kid}, external_aad
    )
    protected, got = cose.verify(encoded, public, external_aad)
    assert protected == {1: -8, 3: 60}
    assert got == payload
    with pytest.raises(BadSignature):
        cose.verify(encoded, public, external_aad + b"!")


def test_sign1_by_pycose_under_another_key_is_refused() -> None:
    encoded = pycose_sign(bytes(32), b"payload", {Algorithm: EdDSA})
    with pytest.raises(BadSignature, match="does not match"):
        cose.verify(encoded, shared.PUBLIC_KEY)


# Hostile input: every byte string is either refused with a SignatureError or, if it
# verifies, carries exactly what was signed.


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=382), st.integers(min_value=1, max_value=255))
def test_no_single_byte_change_yields_other_verified_content(position: int, xor: int) -> None:
    data = bytearray(shared.SIGNED_BY_PYCOSE)
    data[position] ^= xor
    try:
        protected, payload = cose.verify(bytes(data), shared.PUBLIC_KEY)
    except SignatureError:
        return
    assert (protected, payload) == ({1: -8, 4: shared.KID}, shared.MANIFEST)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_refused_with_a_signature_error(data: bytes) -> None:
    with pytest.raises(SignatureError):
        cose.verify(data, shared.PUBLIC_KEY)


@pytest.mark.parametrize(
    "data",
    [
        b"\xd2" + b"\x81" * 20 + b"\x80",  # nesting deeper than cbor.MAX_DEPTH
        b"\xd2\x84\x5b\xff\xff\xff\xff\xff\xff\xff\xff",  # a byte string of 2**64 - 1 bytes
        b"\xd2\x9b\xff\xff\xff\xff\xff\xff\xff\xff",  # an array of 2**64 - 1 items
    ],
    ids=["deep", "huge-bstr", "huge-array"],
)
def test_hostile_cbor_is_a_format_error(data: bytes) -> None:
    with pytest.raises(CoseFormatError, match="not CBOR"):
        cose.verify(data, shared.PUBLIC_KEY)
