"""What the root key signs: release-key certificates and revocation lists.

Pure functions between bytes and plain objects: no files, no clock (the caller passes
``now``). Both are COSE_Sign1 (``gateway.codec.cose``) by the root key, protected
``{1: -8, 4: root kid}``, over a CBOR map with text keys::

    certificate payload = {
        "type": "cert",            ; what the root signed this as; a list is never a cert
        "v": 1,                    ; format version
        "serial": uint,            ; one per certificate the root issues, growing
        "role": "release" / "operator",  ; what the key may sign: releases (the only role a
                                   ; board accepts) or the control channel's documents
                                   ; and commands (gateways, gateway.control.messages)
        "kid": bstr .size 8,       ; SHA-256(key)[:8], the kid its signatures name
        "key": bstr .size 32,      ; the certified key, raw Ed25519 (RFC 8032)
        "not_before": uint,        ; validity, Unix seconds, inclusive
        "not_after": uint,
    }

    revocation list payload = {
        "type": "revocations",
        "v": 1,
        "seq": uint,               ; 1, 2, ...: a board refuses a list older than one it saw
        "revoked": [* bstr .size 8],   ; kids of revoked keys, no repeats
        "issued": uint,            ; when the root signed it, Unix seconds
    }

In SUIT's information model (RFC 9124) certificate and list together are the manifest's
*Delegation Chain* element: what lets a device holding only a trust anchor (the root public
key) accept a manifest signed by another key. Decoding is strict: unknown fields, a field of
the wrong type, a kid that is not the key's, a list with repeats, each refuse the whole item.
``firmware/manifest.py`` checks the same on the board.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fleet.errors import BadCertificate, BadRevocations, CertificateExpired
from gateway.codec import cose
from gateway.errors import GatewayError

FORMAT_VERSION: Final = 1
ROLE_RELEASE: Final = "release"
ROLE_OPERATOR: Final = "operator"
ROLES: Final = (ROLE_RELEASE, ROLE_OPERATOR)
_CERT_FIELDS: Final = frozenset(
    {"type", "v", "serial", "role", "kid", "key", "not_before", "not_after"}
)
_LIST_FIELDS: Final = frozenset({"type", "v", "seq", "revoked", "issued"})


@dataclass(frozen=True, slots=True)
class Certificate:
    """A decoded certificate; trusted only as :func:`verify_certificate` returns it."""

    serial: int
    role: str
    kid: bytes
    key: bytes
    not_before: int
    not_after: int
    #: The kid in the protected header: the root key that (says it) signed it.
    issuer: bytes | None
    encoded: bytes

    def valid_at(self, now: int) -> bool:
        return self.not_before <= now <= self.not_after


@dataclass(frozen=True, slots=True)
class RevocationList:
    """A decoded revocation list; trusted only as :func:`verify_revocations` returns it."""

    seq: int
    revoked: tuple[bytes, ...]
    issued: int
    issuer: bytes | None
    encoded: bytes


def issue_certificate(
    root: Ed25519PrivateKey,
    public_key: bytes,
    *,
    serial: int,
    not_before: int,
    not_after: int,
    role: str = ROLE_RELEASE,
) -> bytes:
    """A certificate, signed by ``root``, for the raw Ed25519 ``public_key``."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    if len(public_key) != cose.PUBLIC_KEY_BYTES:
        raise ValueError("public_key must be a raw 32-byte Ed25519 key")
    if not 0 <= not_before <= not_after:
        raise ValueError("validity must have 0 <= not_before <= not_after")
    if serial < 1:
        raise ValueError("serial must be 1 or more")
    payload = {
        "type": "cert",
        "v": FORMAT_VERSION,
        "serial": serial,
        "role": role,
        "kid": cose.key_id(public_key),
        "key": public_key,
        "not_before": not_before,
        "not_after": not_after,
    }
    return _sign(root, payload)


def issue_revocations(
    root: Ed25519PrivateKey, *, seq: int, revoked: Iterable[bytes], issued: int
) -> bytes:
    """A revocation list, signed by ``root``, of the kids ``revoked`` (order kept)."""
    kids = list(dict.fromkeys(revoked))
    if seq < 1:
        raise ValueError("seq must be 1 or more")
    if any(len(kid) != cose.KID_BYTES for kid in kids):
        raise ValueError("a revoked kid is 8 bytes")
    payload = {"type": "revocations", "v": FORMAT_VERSION, "seq": seq, "revoked": kids}
    payload["issued"] = issued
    return _sign(root, payload)


def _sign(root: Ed25519PrivateKey, payload: dict[str, Any]) -> bytes:
    kid = cose.key_id(cose.public_bytes(root))
    return cose.sign(root, cbor2.dumps(payload), kid=kid)


def decode_certificate(data: bytes) -> Certificate:
    """The certificate in ``data``, its form checked and its signature not: for showing."""
    body, issuer = _payload(data, "certificate", BadCertificate)
    require_fields(body, _CERT_FIELDS, "cert", "certificate", BadCertificate)
    key = bytes_field(body, "key", cose.PUBLIC_KEY_BYTES, "certificate", BadCertificate)
    kid = bytes_field(body, "kid", cose.KID_BYTES, "certificate", BadCertificate)
    if kid != cose.key_id(key):
        raise BadCertificate("certificate: kid is not the key's (SHA-256 of the key, 8 bytes)")
    role = body["role"]
    if not isinstance(role, str):
        raise BadCertificate("certificate: role is not text")
    not_before = uint_field(body, "not_before", "certificate", BadCertificate)
    not_after = uint_field(body, "not_after", "certificate", BadCertificate)
    if not_after < not_before:
        raise BadCertificate("certificate: not_after is before not_before")
    serial = uint_field(body, "serial", "certificate", BadCertificate)
    return Certificate(serial, role, kid, key, not_before, not_after, issuer, data)


def verify_certificate(
    data: bytes, root: Ed25519PublicKey | bytes, *, role: str = ROLE_RELEASE, now: int | None
) -> Certificate:
    """The certificate in ``data`` if ``root`` signed it, for ``role``, valid at ``now``
    (Unix seconds; ``None``: validity not checked, as on a board that has no time yet)."""
    _verify(data, root, "certificate", BadCertificate)
    cert = decode_certificate(data)
    if cert.role != role:
        raise BadCertificate(f"certificate is for role {cert.role!r}, not {role!r}")
    if now is not None and not cert.valid_at(now):
        raise CertificateExpired(
            f"certificate of key {cert.kid.hex()} is valid from {iso(cert.not_before)}"
            f" to {iso(cert.not_after)}, not at {iso(now)}"
        )
    return cert


def decode_revocations(data: bytes) -> RevocationList:
    """The revocation list in ``data``, its form checked and its signature not."""
    body, issuer = _payload(data, "revocation list", BadRevocations)
    require_fields(body, _LIST_FIELDS, "revocations", "revocation list", BadRevocations)
    seq = uint_field(body, "seq", "revocation list", BadRevocations)
    if seq < 1:
        raise BadRevocations("revocation list: seq must be 1 or more")
    issued = uint_field(body, "issued", "revocation list", BadRevocations)
    revoked = body["revoked"]
    if not isinstance(revoked, list) or not all(
        isinstance(k, bytes) and len(k) == cose.KID_BYTES for k in revoked
    ):
        raise BadRevocations("revocation list: revoked is not a list of 8-byte kids")
    if len(set(revoked)) != len(revoked):
        raise BadRevocations("revocation list: a kid is listed twice")
    return RevocationList(seq, tuple(revoked), issued, issuer, data)


def verify_revocations(
    data: bytes, root: Ed25519PublicKey | bytes, *, seen: int = 0
) -> RevocationList:
    """The revocation list in ``data`` if ``root`` signed it and its seq is not below
    ``seen``, the highest seq already seen (a replayed older list would un-revoke keys)."""
    _verify(data, root, "revocation list", BadRevocations)
    revocations = decode_revocations(data)
    if revocations.seq < seen:
        raise BadRevocations(
            f"revocation list {revocations.seq} is older than list {seen}, already seen"
        )
    return revocations


def iso(when: int) -> str:
    """Unix seconds as an ISO 8601 UTC time, for messages and ``show``."""
    try:
        return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{when} s"


# --- strict fields (fleet.manifest checks its own with these too) ------------------------


def _verify(data: bytes, root: Ed25519PublicKey | bytes, what: str, error: type[Exception]) -> None:
    try:
        cose.verify(data, root)
    except GatewayError as exc:
        raise error(f"{what}: not signed by the root key ({exc})") from None


def _payload(data: bytes, what: str, error: type[Exception]) -> tuple[dict[Any, Any], bytes | None]:
    try:
        message = cose.decode(data)
        body = cose.loads(message.payload, what)
    except cose.CoseError as exc:
        raise error(f"{what}: {exc}") from None
    if not isinstance(body, dict):
        raise error(f"{what}: payload is not a map")
    return body, message.kid


def require_fields(
    body: dict[Any, Any], fields: frozenset[str], kind: str, what: str, error: type[Exception]
) -> None:
    if body.get("type") != kind:
        raise error(f"{what}: type is {body.get('type')!r}, not {kind!r}")
    unknown = sorted(repr(k) for k in body if k not in fields)
    if unknown:
        raise error(f"{what}: unknown field(s) {', '.join(unknown)}")
    missing = sorted(k for k in fields if k not in body)
    if missing:
        raise error(f"{what}: lacks {', '.join(missing)}")
    version = body["v"]
    if type(version) is not int or version != FORMAT_VERSION:
        raise error(f"{what}: format version {version!r}, not {FORMAT_VERSION}")


def uint_field(body: dict[Any, Any], key: str, what: str, error: type[Exception]) -> int:
    value = body[key]
    if type(value) is not int or not 0 <= value < 2**63:
        raise error(f"{what}: {key} is not an unsigned integer")
    return value


def bytes_field(
    body: dict[Any, Any], key: str, size: int, what: str, error: type[Exception]
) -> bytes:
    value = body[key]
    if not isinstance(value, bytes) or len(value) != size:
        raise error(f"{what}: {key} is not {size} bytes")
    return value


__all__ = [
    "ROLE_OPERATOR",
    "ROLE_RELEASE",
    "Certificate",
    "RevocationList",
    "decode_certificate",
    "decode_revocations",
    "iso",
    "issue_certificate",
    "issue_revocations",
    "verify_certificate",
    "verify_revocations",
]
