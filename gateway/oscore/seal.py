"""Sealed board keys: a board's key material encrypted to one gateway (a pure codec).

The fleet puts each board's OSCORE key material in its gateway's desired document, which
crosses the broker; sealed, only that gateway can read it. Each gateway has an X25519 key
pair (:mod:`gateway.oscore.seal_key`), whose public part it reports in its signed state.
Sealing is ECDH-ES: a fresh ephemeral X25519 key per seal, the shared secret through
HKDF-SHA-256 to an AES-256-GCM key; the AAD binds the site, the gateway and the board, so a
seal moved to another board's entry, or to another gateway's document, does not open::

    sealed = CBOR [1, ephemeral public key (32 bytes), nonce (12 bytes), ciphertext]
    key    = HKDF-SHA-256(ikm = X25519(ephemeral, gateway), salt = ephemeral pub || gateway pub,
                          info = "simpul seal v1", 32 bytes)
    aad    = CBOR ["simpul-seal", 1, site, gateway_id, board_id]
    plaintext = the board file's JSON (gateway.oscore.keys)

No files, sockets or clocks; :func:`seal` draws its ephemeral key and nonce at random unless
they are passed in (tests).
"""

from __future__ import annotations

import os
from typing import Final

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.errors import SealRefused

VERSION: Final = 1
PUBLIC_BYTES: Final = 32
NONCE_BYTES: Final = 12
#: A sealed board file is about 200 bytes; anything far larger is refused unparsed.
MAX_SEALED_BYTES: Final = 1024
_INFO: Final = b"simpul seal v1"


def public_bytes(key: X25519PrivateKey | X25519PublicKey) -> bytes:
    """The raw 32-byte public key."""
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def seal(
    plaintext: bytes,
    gateway_public: bytes,
    *,
    site: str,
    gateway: str,
    board_id: str,
    ephemeral: X25519PrivateKey | None = None,
    nonce: bytes | None = None,
) -> bytes:
    """``plaintext`` sealed to the gateway whose raw X25519 public key is ``gateway_public``."""
    if len(gateway_public) != PUBLIC_BYTES:
        raise ValueError("a gateway's seal key is 32 raw bytes")
    ephemeral = ephemeral or X25519PrivateKey.generate()
    nonce = nonce or os.urandom(NONCE_BYTES)
    epk = public_bytes(ephemeral)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(gateway_public))
    key = _derive(shared, epk, gateway_public)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, _aad(site, gateway, board_id))
    return bytes(cbor2.dumps([VERSION, epk, nonce, ciphertext]))


def open_sealed(
    sealed: bytes, private: X25519PrivateKey, *, site: str, gateway: str, board_id: str
) -> bytes:
    """The plaintext of a seal made for this gateway and board; :class:`SealRefused` else."""
    if not isinstance(sealed, bytes) or len(sealed) > MAX_SEALED_BYTES:
        raise SealRefused("a sealed key must be at most 1 KiB of bytes")
    try:
        body = cbor2.loads(sealed)
    except Exception:  # cbor2 raises several kinds for hostile bytes
        raise SealRefused("a sealed key is not CBOR") from None
    if not (
        isinstance(body, list)
        and len(body) == 4
        and body[0] == VERSION
        and isinstance(body[1], bytes)
        and len(body[1]) == PUBLIC_BYTES
        and isinstance(body[2], bytes)
        and len(body[2]) == NONCE_BYTES
        and isinstance(body[3], bytes)
    ):
        raise SealRefused("a sealed key is not [1, epk, nonce, ciphertext]")
    _, epk, nonce, ciphertext = body
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(epk))
    except ValueError:  # a low-order point: an all-zero shared secret
        raise SealRefused("a sealed key's ephemeral key is not usable") from None
    key = _derive(shared, epk, public_bytes(private))
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, _aad(site, gateway, board_id))
    except InvalidTag:
        raise SealRefused(
            f"the sealed key for {board_id} does not open here (tampered, or sealed for "
            "another gateway, site or board)"
        ) from None


def _derive(shared: bytes, epk: bytes, recipient: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=epk + recipient, info=_INFO)
    return hkdf.derive(shared)


def _aad(site: str, gateway: str, board_id: str) -> bytes:
    return bytes(cbor2.dumps(["simpul-seal", VERSION, site, gateway, board_id]))
