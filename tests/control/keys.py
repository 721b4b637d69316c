"""An operator's keys for control-channel tests: a root, an operator key it certified, and
the root's revocation list, all in memory."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet.certs import ROLE_OPERATOR, issue_certificate, issue_revocations
from gateway.codec import cose
from gateway.control import messages


@dataclass
class Operator:
    """Signs envelopes as the fleet does; every field can be swapped to forge one."""

    root: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    role: str = ROLE_OPERATOR
    valid_s: tuple[int, int] = (-60, 86_400)
    revoked: tuple[bytes, ...] = ()
    list_seq: int = 1

    @property
    def root_public(self) -> bytes:
        return cose.public_bytes(self.root)

    @property
    def kid(self) -> bytes:
        return cose.key_id(cose.public_bytes(self.key))

    def certificate(self, now: int | None = None) -> bytes:
        at = int(time.time()) if now is None else now
        return issue_certificate(
            self.root,
            cose.public_bytes(self.key),
            serial=2,
            not_before=max(0, at + self.valid_s[0]),
            not_after=max(0, at + self.valid_s[1]),
            role=self.role,
        )

    def revocations(self, now: int | None = None) -> bytes:
        at = int(time.time()) if now is None else now
        return issue_revocations(self.root, seq=self.list_seq, revoked=self.revoked, issued=at)

    def seal(self, message: messages.Desired | messages.Command, now: int | None = None) -> bytes:
        return messages.envelope(self.key, self.certificate(now), self.revocations(now), message)
