# ruff: noqa: PT017, UP031 - MicroPython has no pytest or contextlib; %-format is its idiom
"""ed25519.py against RFC 8032's test vectors and forged signatures; runs on CPython and on
MicroPython (tests/firmware/test_ed25519.py adds cross-checks with ``cryptography``).

Each forgery is one that a verifier without the check in question would accept, built here
from a vector's secret key (S = k * a mod L needs only SHA-512 and integers), so a refusal
proves the check and not a lucky mismatch; where it can, a positive control shows the same
construction verifying once the refused property is put right.
"""

import binascii

import ed25519
import sha512
from errors import BadSignature

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
# The base point B, encoded.
B = binascii.unhexlify("5866666666666666666666666666666666666666666666666666666666666666")

# RFC 8032 §7.1: (name, secret key, public key, message, signature), hex.
RFC8032 = [
    (
        "TEST 1",
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "TEST 2",
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "TEST 3",
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "TEST 1024",
        "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
        "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
        "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98"
        "fa6e264bf09efe12ee50f8f54e9f77b1e355f6c50544e23fb1433ddf73be84d8"
        "79de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d"
        "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc"
        "1a858efcb8550ee3a5e1998bd177e93a7363c344fe6b199ee5d02e82d522c4fe"
        "ba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e"
        "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbef"
        "efd75499da96bd68a8a97b928a8bbc103b6621fcde2beca1231d206be6cd9ec7"
        "aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1"
        "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2"
        "d17ba70eb6248e594e1a2297acbbb39d502f1a8c6eb6f1ce22b3de1a1f40cc24"
        "554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270"
        "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc"
        "2732e69485bbc9c90bfbd62481d9089beccf80cfe2df16a2cf65bd92dd597b07"
        "07e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
        "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51a"
        "ddd3b75a2b1ae0784504df543af8969be3ea7082ff7fc9888c144da2af58429e"
        "c96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7"
        "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c"
        "42f58c30c04aafdb038dda0847dd988dcda6f3bfd15c4b4c4525004aa06eeff8"
        "ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df"
        "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08"
        "d78ff4ef5d63653a65040cf9bfd4aca7984a74d37145986780fc0b16ac451649"
        "de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4"
        "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a3"
        "2ef5b52a1ecc820e308aa342721aac0943bf6686b64b2579376504ccc493d97e"
        "6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f"
        "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b5"
        "0d334ba77c225bc307ba537152f3f1610e4eafe595f6d9d90d11faa933a15ef1"
        "369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d"
        "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c"
        "0618983f8741c5ef68d3a101e8a3b8cac60c905c15fc910840b94c00a0b9d0",
        "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350"
        "aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03",
    ),
    (
        "TEST SHA(abc)",
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
        "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
]

# The eight points of small order, canonically encoded: the identity (order 1), (0, -1)
# (order 2), (+-sqrt(-1), 0) (order 4) and four of order 8.
SMALL_ORDER = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
]


def _h(s: str) -> bytes:
    return binascii.unhexlify(s)


def _vector(i: int) -> tuple[bytes, bytes, bytes, bytes]:
    """(secret, public key, message, signature) of RFC8032[i]."""
    _, secret, public, message, signature = RFC8032[i]
    return _h(secret), _h(public), _h(message), _h(signature)


def _le(n: int) -> bytes:
    return n.to_bytes(32, "little")


def _secret_scalar(secret: bytes) -> int:
    """a of RFC 8032 §5.1.5: the clamped first half of SHA-512(secret)."""
    a = int.from_bytes(sha512.digest(secret)[:32], "little")
    return (a & ((1 << 254) - 8)) | (1 << 254)


def _forge(secret: bytes, public: bytes, r: bytes, message: bytes) -> bytes:
    """R = ``r`` (any 32 bytes) and S = k * a: [S]B = R + [k]A holds whenever ``r`` is
    taken for the identity, whatever its encoding."""
    k = int.from_bytes(sha512.digest(r + public + message), "little") % L
    return r + _le(k * _secret_scalar(secret) % L)


def _refused(public: bytes, message: bytes, signature: bytes, reason: str = "") -> None:
    try:
        ed25519.verify(public, message, signature)
    except BadSignature as e:
        assert reason in str(e), "refused, but for %r, not %r" % (str(e), reason)
        return
    raise AssertionError("accepted: %s" % binascii.hexlify(signature).decode())


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit >> 3] ^= 1 << (bit & 7)
    return bytes(out)


def test_rfc8032_test_vectors_verify() -> None:
    for i in range(len(RFC8032)):
        _, public, message, signature = _vector(i)
        ed25519.verify(public, message, signature)


def test_a_vectors_signature_does_not_verify_another_message() -> None:
    for i in range(len(RFC8032)):
        _, public, message, signature = _vector(i)
        _refused(public, message + b"\x00", signature, "does not match")
        if message:
            _refused(public, _flip(message, 0), signature, "does not match")
            _refused(public, message[:-1], signature, "does not match")


def test_flipped_bits_in_signature_key_or_message_are_refused() -> None:
    _, public, message, signature = _vector(3)  # TEST 1024
    for bit in (0, 1, 100, 200, 254, 255, 256, 257, 400, 500, 508, 511):
        _refused(public, message, _flip(signature, bit))
    for bit in (0, 1, 77, 128, 200, 254, 255):
        _refused(_flip(public, bit), message, signature)
    for bit in (0, 8 * 511 + 3, 8 * 1023 - 1):
        _refused(public, _flip(message, bit), signature, "does not match")


def test_signature_under_another_key_is_refused() -> None:
    _, _, message, signature = _vector(0)
    _, other, _, _ = _vector(1)
    _refused(other, message, signature, "does not match")


def test_s_plus_l_is_refused_though_it_satisfies_the_equation() -> None:
    # [S + L]B = [S]B: without the S < L check anyone could make a second valid signature.
    for i in (0, 4):
        _, public, message, signature = _vector(i)
        s = int.from_bytes(signature[32:], "little")
        _refused(public, message, signature[:32] + _le(s + L), "S is not below")
        _refused(public, message, signature[:32] + _le(L), "S is not below")
        _refused(public, message, signature[:32] + b"\xff" * 32, "S is not below")


def test_identity_as_r_verifies_when_canonical() -> None:
    # The positive control of the two tests below: R = the identity, canonically encoded,
    # and S = k * a satisfy the equation, and RFC 8032 accepts them.
    secret, public, _, _ = _vector(1)
    for message in (b"", b"firmware 1.2.3"):
        ed25519.verify(public, message, _forge(secret, public, _le(1), message))


def test_non_canonical_r_is_refused() -> None:
    # R = the identity as y = p + 1: the same point, so only the encoding check refuses it.
    secret, public, _, _ = _vector(1)
    for message in (b"", b"firmware 1.2.3"):
        forged = _forge(secret, public, _le(P + 1), message)
        _refused(public, message, forged, "R: non-canonical encoding (y >= p)")


def test_r_with_x_zero_and_the_sign_bit_set_is_refused() -> None:
    secret, public, _, _ = _vector(1)
    for message in (b"", b"firmware 1.2.3"):
        forged = _forge(secret, public, _le(1 | 1 << 255), message)
        _refused(public, message, forged, "R: non-canonical encoding (x = 0 with the sign")


def test_non_canonical_public_keys_are_refused() -> None:
    message = b"any message"
    forged = B + _le(1)  # [1]B = B + [k]O: "valid" for every message under the identity
    _refused(_le(P + 1), message, forged, "public key: non-canonical encoding (y >= p)")
    _refused(_le(1 | 1 << 255), message, forged, "public key: non-canonical encoding (x = 0")
    _refused(_le(P), message, forged, "public key: non-canonical encoding (y >= p)")
    _refused(_le(2**255 - 1), message, forged, "public key: non-canonical encoding (y >= p)")


def test_encodings_of_no_curve_point_are_refused() -> None:
    _, public, message, signature = _vector(0)
    off_curve = _le(2)  # (y^2 - 1) / (d y^2 + 1) is not a square for y = 2
    _refused(off_curve, message, signature, "public key: not the encoding of a curve point")
    _refused(public, message, off_curve + signature[32:], "R: not the encoding of a curve point")


def test_public_keys_of_small_order_are_refused() -> None:
    # R = B, S = 1 verifies under the identity for every message ([k]O = O), and under
    # the other seven for every message whose k is a multiple of their order.
    for point in SMALL_ORDER:
        for message in (b"", b"firmware 1.2.3"):
            _refused(_h(point), message, B + _le(1), "public key: a point of small order")


def test_wrong_lengths_are_refused() -> None:
    _, public, message, signature = _vector(0)
    _refused(public[:31], message, signature, "public key: 31 bytes")
    _refused(public + b"\x00", message, signature, "public key: 33 bytes")
    _refused(public, message, signature[:63], "signature: 63 bytes")
    _refused(public, message, signature + b"\x00", "signature: 65 bytes")
    _refused(public, message, b"", "signature: 0 bytes")


def test_verify_steps_yields_along_the_way_and_agrees_with_verify() -> None:
    _, public, message, signature = _vector(2)
    steps = 0
    for _ in ed25519.verify_steps(public, message, signature):
        steps += 1
    assert steps >= 16, steps
    fine = 0
    for _ in ed25519.verify_steps(public, message, signature, step_bits=1):
        fine += 1
    assert fine >= 250, fine
    try:
        for _ in ed25519.verify_steps(public, message + b"!", signature):
            pass
    except BadSignature as e:
        assert "does not match" in str(e)
    else:
        raise AssertionError("verify_steps accepted another message")


def test_verify_takes_bytearray_and_memoryview() -> None:
    _, public, message, signature = _vector(2)
    ed25519.verify(bytearray(public), memoryview(message), bytearray(signature))
