# ruff: noqa: PT017, UP031 - MicroPython has no pytest or contextlib; %-format is its idiom
"""cose.py against a COSE_Sign1 made by pycose, tampered copies of it and malformed ones;
runs on CPython and MicroPython. tests/firmware/test_cose.py remakes the literals below with
pycose, cbor2 and ``cryptography`` to prove they are what they say, and adds more cases.
"""

import binascii

import cbor
import cose
from errors import (
    BadSignature,
    CoseAlgorithmError,
    CoseFormatError,
    CoseTagError,
    SignatureError,
)


def _h(s: str) -> bytes:
    return binascii.unhexlify(s)


# The public key of the Ed25519 seed SHA-256(b"simpul test release key").
PUBLIC_KEY = _h("de77d1558302339e714d74dac7f335a9cf454201a73422d6a4171de9ef5f8374")

MANIFEST = _h(
    "a663736571076776657273696f6e65312e322e336268776965737033322d61697268626f6f745f6d696e0165"
    "66696c65738583676170702e6d707958206ac2d0856f9554afcc92f4cfb8d42345579a7a6e5eaf6fe1f64cc7"
    "ae81697ce9190e958368636f61702e6d70795820cb7c384c5155ec016899a7de6e63cedfab8a6242da2060c1"
    "ba424de18a76c040190da1836973656e6d6c2e6d7079582090696c95c601a4c1c81196a0500fbd0b0c70e2a1"
    "12b601082c2031e47eabd24219076f836863626f722e6d707958208b5799f36347c7709bfe96131b7c826870"
    "0498f400d9b4f3273338055555237f190d83836a6865616c74682e6d7079582097866bf9de79d29ccf057265"
    "ebbcb70ce837927e8a24538681f04560df382aeb19030165746f74616c193429"
)

SIGNED_BY_PYCOSE = _h(
    "d2844ea20127044972656c656173652d31a0590128a663736571076776657273696f6e65312e322e33626877"
    "6965737033322d61697268626f6f745f6d696e016566696c65738583676170702e6d707958206ac2d0856f95"
    "54afcc92f4cfb8d42345579a7a6e5eaf6fe1f64cc7ae81697ce9190e958368636f61702e6d70795820cb7c38"
    "4c5155ec016899a7de6e63cedfab8a6242da2060c1ba424de18a76c040190da1836973656e6d6c2e6d707958"
    "2090696c95c601a4c1c81196a0500fbd0b0c70e2a112b601082c2031e47eabd24219076f836863626f722e6d"
    "707958208b5799f36347c7709bfe96131b7c8268700498f400d9b4f3273338055555237f190d83836a686561"
    "6c74682e6d7079582097866bf9de79d29ccf057265ebbcb70ce837927e8a24538681f04560df382aeb190301"
    "65746f74616c19342958400754a473c63f486d0ca95037c4811887a64f9ec4d5e2950a2ceea68c71572c2f38"
    "11744a01aa0bc3a20f45bfaa3befbad381142752d520abd64e60e8520d910c"
)

WRONG_ALG_SIGNED = _h(
    "d2844ea20126044972656c656173652d31a0590128a663736571076776657273696f6e65312e322e33626877"
    "6965737033322d61697268626f6f745f6d696e016566696c65738583676170702e6d707958206ac2d0856f95"
    "54afcc92f4cfb8d42345579a7a6e5eaf6fe1f64cc7ae81697ce9190e958368636f61702e6d70795820cb7c38"
    "4c5155ec016899a7de6e63cedfab8a6242da2060c1ba424de18a76c040190da1836973656e6d6c2e6d707958"
    "2090696c95c601a4c1c81196a0500fbd0b0c70e2a112b601082c2031e47eabd24219076f836863626f722e6d"
    "707958208b5799f36347c7709bfe96131b7c8268700498f400d9b4f3273338055555237f190d83836a686561"
    "6c74682e6d7079582097866bf9de79d29ccf057265ebbcb70ce837927e8a24538681f04560df382aeb190301"
    "65746f74616c1934295840a6e879332d22b4d637e8ed0d74546c5443d58027870627ad75452bdcbdbcfb1247"
    "65e933fe65b42ec18e9e35d448eaf7ff85de8f1d17d9cf9e720962958f6209"
)

ALG_UNPROTECTED_SIGNED = _h(
    "d28440a20127044972656c656173652d31590128a663736571076776657273696f6e65312e322e3362687769"
    "65737033322d61697268626f6f745f6d696e016566696c65738583676170702e6d707958206ac2d0856f9554"
    "afcc92f4cfb8d42345579a7a6e5eaf6fe1f64cc7ae81697ce9190e958368636f61702e6d70795820cb7c384c"
    "5155ec016899a7de6e63cedfab8a6242da2060c1ba424de18a76c040190da1836973656e6d6c2e6d70795820"
    "90696c95c601a4c1c81196a0500fbd0b0c70e2a112b601082c2031e47eabd24219076f836863626f722e6d70"
    "7958208b5799f36347c7709bfe96131b7c8268700498f400d9b4f3273338055555237f190d83836a6865616c"
    "74682e6d7079582097866bf9de79d29ccf057265ebbcb70ce837927e8a24538681f04560df382aeb19030165"
    "746f74616c19342958404acf93a458bf0eec49a05618e528bed9c8b7c5e2a6cabe2c40a4533b4ea1f3315e52"
    "5da3da39ff33c8f3d8bf2405bf6f711c1fcebf69d930f4d8d18b451e5700"
)
# SIGNED_BY_PYCOSE: pycose's Sign1Message(phdr={Algorithm: EdDSA, KID: b"release-1"},
# payload=MANIFEST).encode() under that key. MANIFEST: a release manifest's shape (296
# bytes of CBOR). WRONG_ALG_SIGNED: the same with protected {1: -7 (ES256), 4: kid} and a
# valid Ed25519 signature over it; ALG_UNPROTECTED_SIGNED: an empty protected header,
# {1: -8, 4: kid} unprotected, validly signed.

KID = b"release-1"


def _refused(data: bytes, error: type, reason: str = "", key: bytes = PUBLIC_KEY) -> None:
    try:
        got = cose.verify(data, key)
    except SignatureError as e:
        assert type(e) is error, "refused with %s (%s), not %s" % (type(e).__name__, e, error)
        assert reason in str(e), "refused for %r, not %r" % (str(e), reason)
        return
    raise AssertionError("accepted: %r" % (got,))


def _sign1(protected: object, unprotected: object, payload: object, signature: object) -> bytes:
    data: bytes = cbor.dumps(cbor.Tag(18, [protected, unprotected, payload, signature]))
    return data


def _parts() -> "list[object]":
    """The four items of SIGNED_BY_PYCOSE: protected, unprotected, payload, signature."""
    parts: list[object] = cbor.loads(SIGNED_BY_PYCOSE).value
    return parts


def _replace(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, old
    i = data.index(old)
    return data[:i] + new + data[i + len(old) :]


def test_sign1_made_by_pycose_verifies() -> None:
    protected, payload = cose.verify(SIGNED_BY_PYCOSE, PUBLIC_KEY)
    assert protected == {1: -8, 4: KID}, protected
    assert payload == MANIFEST
    assert len(payload) > 250


def test_tampered_protected_header_is_refused() -> None:
    forged = _replace(SIGNED_BY_PYCOSE, b"release-1", b"release-2")
    _refused(forged, BadSignature, "does not match")


def test_tampered_payload_is_refused() -> None:
    forged = _replace(SIGNED_BY_PYCOSE, b"1.2.3", b"1.2.4")
    _refused(forged, BadSignature, "does not match")
    forged = _replace(SIGNED_BY_PYCOSE, b"\x19\x0e\x95", b"\x19\x0e\x96")  # app.mpy's size
    _refused(forged, BadSignature, "does not match")


def test_tampered_signature_is_refused() -> None:
    for i in (0, 31, 32, 63):
        forged = bytearray(SIGNED_BY_PYCOSE)
        forged[len(forged) - 64 + i] ^= 0x01
        _refused(bytes(forged), BadSignature)


def test_another_key_or_external_aad_is_refused() -> None:
    other = _h("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    _refused(SIGNED_BY_PYCOSE, BadSignature, "does not match", key=other)
    try:
        cose.verify(SIGNED_BY_PYCOSE, PUBLIC_KEY, b"board aa:bb")
    except BadSignature:
        pass
    else:
        raise AssertionError("accepted with external_aad it was not signed with")


def test_wrong_alg_is_refused_though_validly_signed() -> None:
    _refused(WRONG_ALG_SIGNED, CoseAlgorithmError, "alg -7, not EdDSA (-8)")


def test_alg_only_in_the_unprotected_header_is_refused_though_validly_signed() -> None:
    _refused(ALG_UNPROTECTED_SIGNED, CoseAlgorithmError, "only in the unprotected header")


def test_wrong_or_absent_alg_in_the_protected_header_is_refused() -> None:
    _, unprotected, payload, signature = _parts()
    for header in ({1: -7}, {1: "EdDSA"}, {1: -8.0}, {1: True}, {4: KID}, {}):
        encoded = cbor.dumps(header) if header else b""
        _refused(_sign1(encoded, unprotected, payload, signature), CoseAlgorithmError)
    forged = _replace(SIGNED_BY_PYCOSE, b"\x01\x27\x04", b"\x01\x26\x04")  # alg -8 -> -7
    _refused(forged, CoseAlgorithmError, "alg -7")


def test_wrong_tag_is_refused() -> None:
    assert SIGNED_BY_PYCOSE[0] == 0xD2  # tag 18
    _refused(b"\xd1" + SIGNED_BY_PYCOSE[1:], CoseTagError, "tag 17, not 18")  # COSE_Mac0
    _refused(b"\xd8\x62" + SIGNED_BY_PYCOSE[1:], CoseTagError, "tag 98, not 18")  # COSE_Sign
    _refused(SIGNED_BY_PYCOSE[1:], CoseTagError, "untagged")
    _refused(b"\xd8\x3d" + SIGNED_BY_PYCOSE, CoseTagError, "tag 61")  # a CWT around it


def test_malformed_structures_are_refused() -> None:
    protected, unprotected, payload, signature = _parts()
    malformed = [
        (b"", "not CBOR"),
        (b"\xff", "not CBOR"),
        (SIGNED_BY_PYCOSE[:-1], "not CBOR"),
        (SIGNED_BY_PYCOSE + b"\x00", "not CBOR"),
        (cbor.dumps(cbor.Tag(18, [protected, unprotected, payload])), "array of four"),
        (cbor.dumps(cbor.Tag(18, {1: protected})), "array of four"),
        (_sign1("protected", unprotected, payload, signature), "protected header is not"),
        (_sign1(cbor.dumps([1, -8]), unprotected, payload, signature), "is not a map"),
        (_sign1(b"\xa1\x01", unprotected, payload, signature), "protected header: not CBOR"),
        (_sign1(protected, [], payload, signature), "unprotected header is not a map"),
        (_sign1(protected, unprotected, None, signature), "detached payload"),
        (_sign1(protected, unprotected, "text", signature), "payload is not"),
        (_sign1(protected, unprotected, payload, None), "signature is not"),
        (_sign1(protected, {4: KID}, payload, signature), "label 4 in both headers"),
        (_sign1(protected, {2: [99]}, payload, signature), "critical headers"),
        (_sign1(cbor.dumps({1: -8, 2: [99]}), {}, payload, signature), "critical headers"),
    ]
    for data, reason in malformed:
        _refused(data, CoseFormatError, reason)


def test_signature_of_the_wrong_length_is_refused() -> None:
    protected, unprotected, payload, signature = _parts()
    assert isinstance(signature, bytes)
    _refused(_sign1(protected, unprotected, payload, signature[:63]), BadSignature, "63 bytes")
    _refused(_sign1(protected, unprotected, payload, b""), BadSignature, "0 bytes")


def test_every_refusal_is_a_signature_error() -> None:
    for cls in (BadSignature, CoseAlgorithmError, CoseFormatError, CoseTagError):
        assert issubclass(cls, SignatureError), cls


def test_verify_steps_yields_none_then_the_result_and_refuses_as_verify() -> None:
    items = list(cose.verify_steps(SIGNED_BY_PYCOSE, PUBLIC_KEY))
    assert len(items) > 10, len(items)
    assert items[:-1] == [None] * (len(items) - 1)
    assert items[-1] == ({1: -8, 4: KID}, MANIFEST)
    forged = _replace(SIGNED_BY_PYCOSE, b"1.2.3", b"1.2.4")
    steps = cose.verify_steps(forged, PUBLIC_KEY)
    try:
        for item in steps:
            assert item is None, "a result before the signature was checked"
    except BadSignature:
        pass
    else:
        raise AssertionError("verify_steps accepted a tampered payload")
    try:
        next(cose.verify_steps(WRONG_ALG_SIGNED, PUBLIC_KEY))
    except CoseAlgorithmError:
        pass
    else:
        raise AssertionError("verify_steps started on a wrong alg")


def test_unverified_checks_the_form_but_not_the_signature() -> None:
    forged = _replace(SIGNED_BY_PYCOSE, b"1.2.3", b"1.2.4")
    protected, payload = cose.unverified(forged)  # what manifest.py reads only to refuse early
    assert protected == {1: -8, 4: KID}
    assert b"1.2.4" in payload
    for data, error in (
        (SIGNED_BY_PYCOSE[1:], CoseTagError),
        (WRONG_ALG_SIGNED, CoseAlgorithmError),
    ):
        try:
            cose.unverified(data)
        except error:
            continue
        raise AssertionError("unverified accepted a malformed message")
