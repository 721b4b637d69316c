"""A chain of keys, certificates, revocation lists and manifests made from fixed seeds at a
fixed time, so release tests and the board's test vectors are deterministic (Ed25519
signatures are). tests/firmware/test_manifest.py remakes the board's vectors with it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet.certs import issue_certificate, issue_revocations
from fleet.manifest import FileEntry, file_entries, sign_manifest
from gateway.codec import cose

#: 2025-06-15T15:06:40Z: when the test chain's keys were certified.
NOW = 1_750_000_000
DAY = 86_400


def seeded_key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())


@dataclass
class Chain:
    """A root key, release keys it certifies and a revocation list, all from fixed seeds."""

    root: Ed25519PrivateKey = field(default_factory=lambda: seeded_key("simpul test root"))
    release: Ed25519PrivateKey = field(default_factory=lambda: seeded_key("simpul test release 1"))

    @property
    def root_public(self) -> bytes:
        return cose.public_bytes(self.root)

    @property
    def release_kid(self) -> bytes:
        return cose.key_id(cose.public_bytes(self.release))

    def certificate(
        self,
        key: Ed25519PrivateKey | None = None,
        *,
        by: Ed25519PrivateKey | None = None,
        serial: int = 1,
        not_before: int = NOW,
        not_after: int = NOW + 730 * DAY,
    ) -> bytes:
        return issue_certificate(
            by or self.root,
            cose.public_bytes(key or self.release),
            serial=serial,
            not_before=not_before,
            not_after=not_after,
        )

    def revocations(
        self, revoked: tuple[bytes, ...] = (), *, seq: int = 1, by: Ed25519PrivateKey | None = None
    ) -> bytes:
        return issue_revocations(by or self.root, seq=seq, revoked=revoked, issued=NOW)

    def manifest(
        self,
        *,
        seq: int = 7,
        files: dict[str, bytes] | None = None,
        entries: tuple[FileEntry, ...] | None = None,
        hw: str = "esp32",
        boot_min: int = 1,
        signer: Ed25519PrivateKey | None = None,
        certificate: bytes | None = None,
        revocations: bytes | None = None,
    ) -> bytes:
        return sign_manifest(
            signer or self.release,
            seq=seq,
            version="1.2.3",
            hw=hw,
            boot_min=boot_min,
            mpy=6,
            created=NOW + DAY,
            files=entries if entries is not None else file_entries(files or APP_FILES),
            certificate=certificate if certificate is not None else self.certificate(),
            revocations=revocations if revocations is not None else self.revocations(),
        )


#: Three small stand-ins for compiled app files.
APP_FILES = {
    "app.mpy": b"M\x06\x00\x1f" + bytes(range(256)) * 4,
    "senml.mpy": b"M\x06\x00\x1f" + b"senml" * 100,
    "cbor.mpy": b"M\x06\x00\x1f" + b"\x00\xff" * 333,
}
