"""COSE_Sign1 (RFC 9052 §4.2) with EdDSA over Ed25519 (RFC 9053 §2.2): the one host-side
codec for everything simpul signs, releases, certificates, revocation lists and batches alike.

Usage::

    from gateway.codec import cose
    signed = cose.sign(private_key, payload, kid=cose.key_id(public_raw))
    protected, payload = cose.verify(signed, {kid: public_key})  # or verify(signed, public_key)

Pure functions between bytes and plain objects: no files, sockets or clocks. What is made::

    18([ protected: bstr .cbor {1: -8, 4: kid, * extra}, ; alg EdDSA, kid, caller's labels
         unprotected: {},
         payload: bstr,
         signature: bstr .size 64 ])                      ; over Sig_structure, RFC 9052 §4.4

:func:`verify` returns the protected header (a dict keyed by COSE labels) and the payload
only when the signature verifies; nothing in the unprotected header is returned, since
nothing vouches for it. It decodes as strictly as the board's ``firmware/cose.py``, so the
gateway never accepts what a board refuses (and the reverse):

- :class:`~gateway.errors.CoseError` for form: not exactly one CBOR item under the strict
  profile of :mod:`gateway.codec.cbor` (trailing bytes, duplicate map keys, nesting deeper
  than 16, a tag other than the outer 18, integers beyond 64 bits), not tag 18, not
  an array of four (protected bstr, unprotected map, payload bstr, signature bstr), a
  protected header that is not a map, a label in both headers (RFC 9052 §3), a ``crit``
  header (this codec understands no extension), a detached payload, an ``alg`` that is
  absent, only unprotected, or not EdDSA (-8), a signature that is not 64 bytes;
- :class:`~gateway.errors.UnknownKey` when a key set is given and the protected ``kid``
  (label 4) names none of its keys, or is absent;
- :class:`~gateway.errors.BadSignature` when the signature does not verify.

``CoseError`` and ``BadSignature`` are ``ValueError``s, ``UnknownKey`` a ``LookupError``.
External AAD is supported on both sides and empty by
default: everything simpul signs today carries its context in the payload instead, so that
any COSE library checks it without knowing simpul.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.codec import cbor
from gateway.errors import BadPayload, BadSignature, CoseError, UnknownKey

SIGN1_TAG: Final = 18
ALG: Final = 1  # header labels, RFC 9052 §3.1
CRIT: Final = 2
CONTENT_TYPE: Final = 3
KID: Final = 4
EDDSA: Final = -8  # RFC 9053 §2.2
SIGNATURE_BYTES: Final = 64
PUBLIC_KEY_BYTES: Final = 32
KID_BYTES: Final = 8
MAX_DEPTH: Final = 16
_SIG_CONTEXT: Final = "Signature1"


#: What :func:`verify` accepts as keys: one key (raw 32 bytes or a public key object), or a
#: mapping from kid to key, in which case the protected header's kid picks the key.
PublicKeys = Ed25519PublicKey | bytes | Mapping[bytes, Ed25519PublicKey | bytes]


@dataclass(frozen=True, slots=True)
class Sign1:
    """A decoded COSE_Sign1 whose form passed; nothing in it is trusted before :func:`verify`."""

    protected_bytes: bytes
    protected: dict[int, Any]
    unprotected: dict[Any, Any]
    payload: bytes
    signature: bytes

    @property
    def kid(self) -> bytes | None:
        """The protected header's kid, if it has a byte string there."""
        kid = self.protected.get(KID)
        return kid if isinstance(kid, bytes) else None

    def to_be_signed(self, external_aad: bytes = b"") -> bytes:
        """The Sig_structure the signature covers (RFC 9052 §4.4)."""
        return sig_structure(self.protected_bytes, self.payload, external_aad)


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The raw 32-byte public key (RFC 8032)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public_key: bytes) -> bytes:
    """The ``kid`` simpul gives a raw public key: the first 8 bytes of its SHA-256."""
    return hashlib.sha256(public_key).digest()[:KID_BYTES]


def sig_structure(protected: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """The bytes EdDSA signs (RFC 9052 §4.4)."""
    return cbor2.dumps([_SIG_CONTEXT, protected, external_aad, payload])


def sign(
    private_key: Ed25519PrivateKey,
    payload: bytes,
    *,
    kid: bytes,
    extra_protected: Mapping[int, Any] | None = None,
    external_aad: bytes = b"",
) -> bytes:
    """``payload`` as a COSE_Sign1 signed by ``private_key``, protected ``{1: -8, 4: kid}``
    plus ``extra_protected`` (which may not set alg, kid or crit)."""
    if not isinstance(payload, bytes):
        raise TypeError("payload must be bytes")
    if not isinstance(kid, bytes) or not kid:
        raise ValueError("kid must be a non-empty byte string")
    header: dict[int, Any] = {ALG: EDDSA, KID: kid}
    for label, value in (extra_protected or {}).items():
        if label in (ALG, KID, CRIT):
            raise ValueError(f"extra_protected may not set header label {label}")
        header[label] = value
    protected = cbor2.dumps(header)
    signature = private_key.sign(sig_structure(protected, payload, external_aad))
    return bytes(cbor2.dumps(cbor2.CBORTag(SIGN1_TAG, [protected, {}, payload, signature])))


def decode(data: bytes) -> Sign1:
    """The COSE_Sign1 that is exactly ``data``, its form and headers checked; raise
    :class:`CoseError` otherwise. The signature is :func:`verify`'s job."""
    item = loads(data, "COSE_Sign1", tagged=True)
    if not isinstance(item, cbor.Tagged):
        raise CoseError("untagged: a COSE_Sign1 carries tag 18")
    if item.tag != SIGN1_TAG:
        raise CoseError(f"tag {item.tag}, not 18 (COSE_Sign1)")
    body = item.value
    if not isinstance(body, list) or len(body) != 4:
        raise CoseError("COSE_Sign1 is not an array of four items")
    protected_bytes, unprotected, payload, signature = body
    if not isinstance(protected_bytes, bytes):
        raise CoseError("protected header is not a byte string")
    if not isinstance(unprotected, dict):
        raise CoseError("unprotected header is not a map")
    if payload is None:
        raise CoseError("detached payload: not supported")
    if not isinstance(payload, bytes):
        raise CoseError("payload is not a byte string")
    if not isinstance(signature, bytes):
        raise CoseError("signature is not a byte string")
    protected = loads(protected_bytes, "protected header") if protected_bytes else {}
    if not isinstance(protected, dict):
        raise CoseError("protected header is not a map")
    for label in protected:
        if label in unprotected:
            raise CoseError(f"label {label!r} in both headers")
    if CRIT in protected or CRIT in unprotected:
        raise CoseError("critical headers this verifier does not understand")
    alg = protected.get(ALG)
    if alg is None:
        where = "only in the unprotected header" if ALG in unprotected else "absent"
        raise CoseError(f"alg is {where}")
    if type(alg) is not int or alg != EDDSA:
        raise CoseError(f"alg {alg!r}, not EdDSA (-8)")
    if len(signature) != SIGNATURE_BYTES:
        raise CoseError(f"signature of {len(signature)} bytes, not {SIGNATURE_BYTES}")
    return Sign1(protected_bytes, protected, unprotected, payload, signature)


def verify(
    data: bytes, keys: PublicKeys, *, external_aad: bytes = b""
) -> tuple[dict[int, Any], bytes]:
    """(protected header, payload) of the COSE_Sign1 ``data`` if one of ``keys`` signed it
    with ``external_aad``; raise :class:`CoseError`, ``UnknownKey`` or ``BadSignature``."""
    message = decode(data)
    public = _pick_key(message, keys)
    try:
        public.verify(message.signature, message.to_be_signed(external_aad))
    except InvalidSignature:
        kid = message.kid
        named = f" by key {kid.hex()}" if kid is not None else ""
        raise BadSignature(f"COSE_Sign1{named}: signature does not verify") from None
    return message.protected, message.payload


def _pick_key(message: Sign1, keys: PublicKeys) -> Ed25519PublicKey:
    if isinstance(keys, Ed25519PublicKey | bytes):
        return _public_key(keys)
    kid = message.kid
    if kid is None:
        raise UnknownKey("COSE_Sign1 names no key (no kid in the protected header)")
    key = keys.get(kid)
    if key is None:
        raise UnknownKey(f"COSE_Sign1 signed by key {kid.hex()}, which is not trusted here")
    return _public_key(key)


def _public_key(key: Ed25519PublicKey | bytes) -> Ed25519PublicKey:
    if isinstance(key, Ed25519PublicKey):
        return key
    if len(key) != PUBLIC_KEY_BYTES:
        raise ValueError(f"a raw Ed25519 public key is {PUBLIC_KEY_BYTES} bytes, not {len(key)}")
    return Ed25519PublicKey.from_public_bytes(key)


# --- strict CBOR ----------------------------------------------------------------------------


def loads(data: bytes, what: str = "CBOR", *, tagged: bool = False) -> Any:
    """The one CBOR item that is exactly ``data``, as plain objects, under simpul's strict
    profile (:func:`gateway.codec.cbor.loads`: no duplicate keys, UTF-8 text, 64-bit
    integers, finite floats, nesting at most 16); a :class:`~gateway.codec.cbor.Tagged`
    18 at the top when ``tagged``. Raises :class:`CoseError` naming ``what`` otherwise."""
    if not isinstance(data, bytes):
        raise CoseError(f"{what}: not bytes")
    try:
        return cbor.loads(data, tags=(SIGN1_TAG,) if tagged else (), max_depth=MAX_DEPTH)
    except BadPayload as exc:
        detail = str(exc).removeprefix("not valid CBOR: ")
        raise CoseError(f"{what}: not CBOR ({detail})") from None


__all__ = [
    "EDDSA",
    "KID",
    "SIGN1_TAG",
    "CoseError",
    "PublicKeys",
    "Sign1",
    "decode",
    "key_id",
    "loads",
    "public_bytes",
    "sig_structure",
    "sign",
    "verify",
]
