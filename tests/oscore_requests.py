"""OSCORE-protected requests made cheaply, as a board sends them, for load generators and
fuzzers that must not be the bottleneck of what they measure.

A :class:`BoardSender` protects a request (RFC 8613 §5, AES-CCM-16-64-128) byte for byte as
aiocoap's client-side context does (``tests/gateway/test_oscore_requests.py`` compares the two), but
without aiocoap's ``Message`` copies: about a tenth of the cost. Keys come from aiocoap's own
derivation (HKDF-SHA-256); the cipher is ``cryptography``'s AESCCM, which aiocoap uses too.

The outer message ID and token are not protected (RFC 8613 §4.1.3: they are not in the
AAD), so a request protected once may be sent under any of them: :meth:`ProtectedRequest.with_ids`.
Its answer is matched by token; a protected answer's outer code is always 2.04 (§4.2), so
:meth:`BoardSender.answer_code` decrypts it to find the inner code, and returns the outer code
of an unprotected answer (the gateway's 4.01 refusals).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import cbor2
from aiocoap import oscore
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from gateway.codec import coap
from gateway.oscore.keys import KeyMaterial

OSCORE_OPTION: Final = 9
POST: Final = 0x02
CHANGED: Final = 0x44
#: What :meth:`BoardSender.answer_code` returns for a protected answer that does not verify.
UNVERIFIABLE: Final = -1
#: Every protected request here carries a token of this length (set per send).
TOKEN_BYTES: Final = 4
_TAG_BYTES: Final = 8
_ALG: Final = 10  # AES-CCM-16-64-128
_HEAD: Final = struct.Struct("!BBH")


class _DerivedKeys(oscore.CanProtect, oscore.CanUnprotect, oscore.SecurityContextUtils):  # type: ignore[misc]
    """aiocoap's client-side context for a board, in memory (nothing persisted): the key
    derivation for :class:`BoardSender`, and the reference its protection is compared with."""

    def __init__(self, material: KeyMaterial, sequence_number: int = 0) -> None:
        self.sender_id = material.sid
        self.recipient_id = material.rid
        self.id_context = None
        self.alg_aead = oscore.algorithms[oscore.DEFAULT_ALGORITHM]
        self.hashfun = oscore.hashfunctions[oscore.DEFAULT_HASHFUNCTION]
        self.derive_keys(material.salt, material.secret)
        self.sender_sequence_number = sequence_number
        self.recipient_replay_window = oscore.ReplayWindow(32, lambda: None)
        self.recipient_replay_window.initialize_empty()

    def post_seqnoincrease(self) -> None:
        pass  # a throwaway context: its sequence numbers live in the BoardSender


def aiocoap_context(material: KeyMaterial, sequence_number: int = 0) -> Any:
    """aiocoap's own client-side context for ``material`` (a reference for tests)."""
    return _DerivedKeys(material, sequence_number)


def partial_iv(sequence_number: int) -> bytes:
    """The Partial IV of a sequence number: big-endian, no leading zeros, 0 as one byte."""
    return sequence_number.to_bytes(5, "big").lstrip(b"\0") or b"\0"


@dataclass(frozen=True, slots=True)
class ProtectedRequest:
    """One protected request, sent once or resent under any message ID and token."""

    datagram: bytes
    sequence_number: int
    #: What its answer is verified with: the request's nonce and AAD (RFC 8613 §5.4, §8.3).
    nonce: bytes
    aad: bytes

    def with_ids(self, mid: int, token: bytes) -> bytes:
        """The datagram as a CON with this message ID and token (up to 8 bytes)."""
        rest = self.datagram[4 + (self.datagram[0] & 0x0F) :]
        return _HEAD.pack(0x40 | len(token), self.datagram[1], mid) + token + rest


class BoardSender:
    """A board's sending side of OSCORE: protects requests with its key, in sequence."""

    def __init__(self, material: KeyMaterial, *, sequence_number: int = 0) -> None:
        keys = _DerivedKeys(material)
        self.kid: bytes = material.sid
        self.sequence_number = sequence_number
        self._common_iv: bytes = keys.common_iv
        self._sender = AESCCM(keys.sender_key, tag_length=_TAG_BYTES)
        self._recipient = AESCCM(keys.recipient_key, tag_length=_TAG_BYTES)
        self._recipient_id: bytes = material.rid

    def nonce(self, piv: bytes, generator_id: bytes) -> bytes:
        """RFC 8613 §5.2: the ID's length, the ID and the Partial IV, padded, XOR the Common IV."""
        components = bytes([len(generator_id)]) + generator_id.rjust(7, b"\0") + piv.rjust(5, b"\0")
        return bytes(a ^ b for a, b in zip(components, self._common_iv, strict=True))

    def protect(
        self,
        code: int,
        options: Sequence[coap.Option],
        payload: bytes,
        *,
        mid: int = 0,
        token: bytes = bytes(TOKEN_BYTES),
    ) -> ProtectedRequest:
        """Protect a request (inner ``code``, ``options``, ``payload``) with the next sequence
        number; the outer message is a CON POST carrying only the OSCORE option."""
        seq = self.sequence_number
        self.sequence_number += 1
        piv = partial_iv(seq)
        inner = coap.encode(coap.Datagram(coap.CON, code, 0, b"", tuple(options), payload))
        plaintext = bytes([code]) + inner[4:]
        external_aad = cbor2.dumps([1, [_ALG], self.kid, piv, b""])
        aad = cbor2.dumps(["Encrypt0", b"", external_aad])
        nonce = self.nonce(piv, self.kid)
        ciphertext = self._sender.encrypt(nonce, plaintext, aad)
        value = bytes([0x08 | len(piv)]) + piv + self.kid  # flags: kid present, piv length
        outer = coap.Datagram(
            coap.CON, POST, mid, token, (coap.Option(OSCORE_OPTION, value),), ciphertext
        )
        return ProtectedRequest(coap.encode(outer), seq, nonce, aad)

    def answer_code(self, request: ProtectedRequest, answer: bytes) -> int:
        """The code that matters in ``answer`` to ``request``: the inner code of a protected
        answer (:data:`UNVERIFIABLE` if it does not verify), the code of an unprotected one."""
        try:
            message = coap.decode(answer)
        except coap.FormatError:
            return UNVERIFIABLE
        values = message.values(OSCORE_OPTION)
        if not values:
            return message.code
        value = values[0]
        nonce = request.nonce
        if value and value[0] & 0x07:  # the answer brings a Partial IV of its own
            n = value[0] & 0x07
            nonce = self.nonce(value[1 : 1 + n], self._recipient_id)
        try:
            plaintext = self._recipient.decrypt(nonce, message.payload, request.aad)
        except Exception:  # InvalidTag, or a payload shorter than the tag
            return UNVERIFIABLE
        return plaintext[0] if plaintext else UNVERIFIABLE


def readings_options() -> tuple[coap.Option, ...]:
    """A readings request's inner options: Uri-Path ``readings``, Content-Format 112."""
    return (coap.Option(11, b"readings"), coap.Option(12, bytes([112])))
