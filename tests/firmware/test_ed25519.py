"""ed25519.py cross-checked against ``cryptography`` (OpenSSL) and a lax textbook verifier
(CPython only; the VM runs mpy/mpy_test_ed25519.py, whose vectors and forgeries are
checked here too)."""

import hashlib
import itertools
import os

import ed25519
import mpy_test_ed25519 as shared
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from errors import BadSignature
from hypothesis import given, settings
from hypothesis import strategies as st

P = shared.P
L = shared.L
D = -121665 * pow(121666, -1, P) % P


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def firmware_accepts(public: bytes, message: bytes, signature: bytes) -> bool:
    try:
        ed25519.verify(public, message, signature)
    except BadSignature:
        return False
    return True


def openssl_accepts(public: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


# A lax verifier in affine coordinates, straight from the curve's formulas: it reduces
# encodings mod p, ignores the sign of x = 0, takes any S and any key, and checks only
# [S]B = R + [k]A. Whatever it accepts and the firmware refuses is a forgery that only the
# firmware's extra checks stop.


def _lax_add(p1: tuple[int, int], p2: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = p1, p2
    t = D * x1 * x2 * y1 * y2 % P
    return (
        (x1 * y2 + x2 * y1) * pow(1 + t, -1, P) % P,
        (y1 * y2 + x1 * x2) * pow(1 - t, -1, P) % P,
    )


def _lax_mul(n: int, pt: tuple[int, int]) -> tuple[int, int]:
    out = (0, 1)
    while n:
        if n & 1:
            out = _lax_add(out, pt)
        pt = _lax_add(pt, pt)
        n >>= 1
    return out


def _lax_decode(s: bytes) -> tuple[int, int] | None:
    n = int.from_bytes(s, "little")
    y = (n & ((1 << 255) - 1)) % P
    xx = (y * y - 1) * pow(D * y * y + 1, -1, P) % P
    x = pow(xx, (P + 3) // 8, P)
    if (x * x - xx) % P:
        x = x * pow(2, (P - 1) // 4, P) % P
    if (x * x - xx) % P:
        return None
    if x & 1 != n >> 255:
        x = (P - x) % P
    return (x, y)


def lax_accepts(public: bytes, message: bytes, signature: bytes) -> bool:
    a, r = _lax_decode(public), _lax_decode(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    k = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little")
    base = _lax_decode(shared.B)
    assert base is not None
    return _lax_mul(s, base) == _lax_add(r, _lax_mul(k % L, a))


# The shared module's data.


def test_rfc8032_vectors_are_openssls() -> None:
    for i, (name, *_) in enumerate(shared.RFC8032):
        secret, public, message, signature = shared._vector(i)
        key = Ed25519PrivateKey.from_private_bytes(secret)
        assert raw_public(key) == public, name
        assert key.sign(message) == signature, name


def test_the_small_order_points_are_the_eight_of_small_order() -> None:
    points = set()
    for encoded in shared.SMALL_ORDER:
        pt = ed25519._decode(bytes.fromhex(encoded), "test")
        eightfold = ed25519._double(ed25519._double(ed25519._double(pt)))
        assert ed25519._is_identity(eightfold), encoded
        points.add((pt[0], pt[1]))
    assert len(points) == 8


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2**253 - 1))
def test_naf_digits_sum_to_the_scalar_and_keep_their_form(scalar: int) -> None:
    digits = ed25519._naf(scalar)
    assert sum(d << i for i, d in enumerate(digits)) == scalar
    nonzero = [i for i, d in enumerate(digits) if d]
    assert all(digits[i] % 2 == 1 and -15 <= digits[i] <= 15 for i in nonzero)
    assert all(b - a >= 5 for a, b in itertools.pairwise(nonzero))


# Signatures made by OpenSSL.


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=600))
def test_signatures_made_by_openssl_verify(message: bytes) -> None:
    key = Ed25519PrivateKey.generate()
    ed25519.verify(raw_public(key), message, key.sign(message))


def test_every_flipped_bit_of_signature_or_key_is_refused_as_openssl_does() -> None:
    key = Ed25519PrivateKey.generate()
    public, message = raw_public(key), os.urandom(300)
    signature = key.sign(message)
    for bit in range(512):
        forged = shared._flip(signature, bit)
        assert not firmware_accepts(public, message, forged), bit
        assert not openssl_accepts(public, message, forged), bit
    for bit in range(256):
        forged_key = shared._flip(public, bit)
        assert not firmware_accepts(forged_key, message, signature), bit
        assert not openssl_accepts(forged_key, message, signature), bit


def test_every_flipped_bit_of_a_short_message_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    message = b"manifest seq=7"
    signature = key.sign(message)
    for bit in range(8 * len(message)):
        assert not firmware_accepts(raw_public(key), shared._flip(message, bit), signature), bit


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=64, max_size=64), st.binary(max_size=40))
def test_random_signatures_are_refused_like_openssl(signature: bytes, message: bytes) -> None:
    public = raw_public(Ed25519PrivateKey.generate())
    assert firmware_accepts(public, message, signature) is False
    assert openssl_accepts(public, message, signature) is False


# Forgeries: the lax verifier accepts each, so only the firmware's checks refuse them.


def test_lax_verifier_agrees_on_honest_signatures() -> None:
    key = Ed25519PrivateKey.generate()
    message = b"honest"
    assert lax_accepts(raw_public(key), message, key.sign(message))
    assert not lax_accepts(raw_public(key), message + b"!", key.sign(message))


def test_s_plus_l_is_a_forgery_the_firmware_refuses() -> None:
    key = Ed25519PrivateKey.generate()
    public, message = raw_public(key), b"release 12"
    signature = key.sign(message)
    s = int.from_bytes(signature[32:], "little")
    forged = signature[:32] + (s + L).to_bytes(32, "little")
    assert lax_accepts(public, message, forged)
    assert openssl_accepts(public, message, forged) is False
    with pytest.raises(BadSignature, match="S is not below"):
        ed25519.verify(public, message, forged)


@pytest.mark.parametrize(
    ("r", "reason"),
    [
        (P + 1, "R: non-canonical encoding \\(y >= p\\)"),
        (1 | 1 << 255, "R: non-canonical encoding \\(x = 0 with the sign bit set\\)"),
    ],
    ids=["y-plus-p", "negative-zero"],
)
def test_non_canonical_r_is_a_forgery_the_firmware_refuses(r: int, reason: str) -> None:
    secret, public, _, _ = shared._vector(2)
    message = b"desired state 3"
    forged = shared._forge(secret, public, r.to_bytes(32, "little"), message)
    assert lax_accepts(public, message, forged)
    with pytest.raises(BadSignature, match=reason):
        ed25519.verify(public, message, forged)
    canonical = shared._forge(secret, public, (1).to_bytes(32, "little"), message)
    ed25519.verify(public, message, canonical)


@pytest.mark.parametrize("point", shared.SMALL_ORDER)
def test_small_order_keys_make_forgeries_the_firmware_refuses(point: str) -> None:
    public = bytes.fromhex(point)
    forged = shared.B + (1).to_bytes(32, "little")  # R = B, S = 1
    # The forgery holds for each message whose k sends A to the identity: for the identity,
    # all; for a point of order n, about one in n.
    messages = [m for m in (b"m%d" % i for i in range(64)) if lax_accepts(public, m, forged)]
    assert messages, "no message among 64 that the lax verifier takes"
    for message in messages[:4]:
        with pytest.raises(BadSignature, match="public key: a point of small order"):
            ed25519.verify(public, message, forged)


@pytest.mark.parametrize("shared_coordinate", ["y", "x"])
def test_a_result_sharing_one_coordinate_with_r_is_refused(shared_coordinate: str) -> None:
    # S = k*a - r makes [S]B - [k]A = [-r]B = (-x, y) of [r]B = (x, y). Against R = [r]B
    # that result shares y; against R = [r]B + (0, -1) = (-x, -y) it shares x. A verifier
    # that compared one coordinate would accept either.
    secret, public, _, _ = shared._vector(2)
    base = _lax_decode(shared.B)
    assert base is not None
    x, y = _lax_mul(0x5EED, base)
    r_point = (x, y) if shared_coordinate == "y" else ((P - x) % P, (P - y) % P)
    r = (r_point[1] | (r_point[0] & 1) << 255).to_bytes(32, "little")
    message = b"release 13"
    k = int.from_bytes(hashlib.sha512(r + public + message).digest(), "little") % L
    s = (k * shared._secret_scalar(secret) - 0x5EED) % L
    forged = r + s.to_bytes(32, "little")
    assert not lax_accepts(public, message, forged)
    with pytest.raises(BadSignature, match="does not match"):
        ed25519.verify(public, message, forged)


def test_non_canonical_identity_key_is_a_forgery_the_firmware_refuses() -> None:
    public = (P + 1).to_bytes(32, "little")
    forged = shared.B + (1).to_bytes(32, "little")
    assert lax_accepts(public, b"anything", forged)
    with pytest.raises(BadSignature, match="public key: non-canonical"):
        ed25519.verify(public, b"anything", forged)
