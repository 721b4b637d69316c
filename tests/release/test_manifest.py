"""The manifest (fleet/manifest.py): its fields, SUIT's elements, strict decoding, and the
chain from the root checked in the board's order."""

from __future__ import annotations

import hashlib
from typing import Any

import cbor2
import pytest
from pycose.keys.curves import Ed25519
from pycose.keys.okp import OKPKey

from fleet.errors import (
    BadCertificate,
    BadManifest,
    BadManifestSignature,
    BadRevocations,
    BootTooOld,
    ReleaseRefused,
    StaleRelease,
)
from fleet.manifest import (
    MAX_MANIFEST_BYTES,
    FileEntry,
    check_files,
    decode_manifest,
    sign_manifest,
    verify_manifest,
)
from gateway.codec import cose
from tests.release.chain import APP_FILES, DAY, NOW, Chain, seeded_key
from tests.release.test_cose_codec import pycose_decode


def payload_of(signed: bytes) -> dict[str, Any]:
    body: dict[str, Any] = cbor2.loads(cbor2.loads(signed).value[2])
    return body


def resigned(chain: Chain, signed: bytes, **changes: Any) -> bytes:
    """The manifest with fields changed (None deletes one), validly signed by the release key."""
    body = payload_of(signed)
    body.update(changes)
    body = {k: v for k, v in body.items() if v is not None}
    return cose.sign(chain.release, cbor2.dumps(body), kid=chain.release_kid)


def test_manifest_carries_every_field(chain: Chain) -> None:
    signed = chain.manifest()
    body = payload_of(signed)
    assert list(body) == [
        "type", "v", "seq", "version", "hw", "boot_min", "mpy", "created", "files", "total",
        "cert", "revocations",
    ]  # fmt: skip
    assert body["files"] == [
        [path, hashlib.sha256(APP_FILES[path]).digest(), len(APP_FILES[path])]
        for path in sorted(APP_FILES)
    ]
    assert body["total"] == sum(map(len, APP_FILES.values()))
    assert body["cert"] == chain.certificate()
    assert body["revocations"] == chain.revocations()
    assert cbor2.loads(signed).value[0] == cbor2.dumps({1: -8, 4: chain.release_kid})


def test_verified_manifest_says_what_to_install(chain: Chain) -> None:
    found = verify_manifest(
        chain.manifest(), chain.root_public, installed_seq=6, hw="esp32", now=NOW + DAY,
        revocations_seen=1, boot_version=1, free_bytes=10_000,
    )  # fmt: skip
    m = found.manifest
    assert (m.seq, m.version, m.hw, m.boot_min, m.mpy, m.created) == (
        7,
        "1.2.3",
        "esp32",
        1,
        6,
        NOW + DAY,
    )
    assert [e.path for e in m.files] == ["app.mpy", "cbor.mpy", "senml.mpy"]
    assert found.certificate.kid == m.kid == chain.release_kid
    assert found.revocations.seq == 1
    check_files(m, APP_FILES)


def test_pycose_verifies_a_manifest(chain: Chain) -> None:
    message = pycose_decode(chain.manifest())
    message.key = OKPKey(crv=Ed25519, x=cose.public_bytes(chain.release))
    assert message.verify_signature()


def test_sign_manifest_refuses_what_a_board_would_refuse(chain: Chain) -> None:
    for entries, reason in [
        ((), "1 to 64"),
        ((FileEntry("boot.mpy", bytes(32), 1),), "shadow the boot part"),
        ((FileEntry("slots.py", bytes(32), 1),), "shadow the boot part"),
        ((FileEntry("FlashFS.mpy", bytes(32), 1),), "shadow the boot part"),
        ((FileEntry("../app.mpy", bytes(32), 1),), "plain file name"),
        ((FileEntry("lib/app.mpy", bytes(32), 1),), "plain file name"),
        ((FileEntry(".hidden", bytes(32), 1),), "plain file name"),
        ((FileEntry("a.mpy", bytes(31), 1),), "32 bytes"),
        ((FileEntry("a.mpy", bytes(32), 1), FileEntry("a.mpy", bytes(32), 1)), "twice"),
        ((FileEntry("a.mpy", bytes(32), 1), FileEntry("A.mpy", bytes(32), 1)), "twice"),
    ]:
        with pytest.raises(BadManifest, match=reason):
            chain.manifest(entries=entries)
    with pytest.raises(BadManifest, match=r"not X\.Y\.Z"):
        sign_manifest(
            chain.release, seq=1, version="1.2", hw="esp32", boot_min=1, mpy=6, created=0,
            files=(FileEntry("a.mpy", bytes(32), 1),), certificate=b"", revocations=b"",
        )  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"extra": 1}, "unknown field"),
        ({"hw": None}, "lacks hw"),
        ({"type": "cert"}, "type is 'cert'"),
        ({"v": 2}, "format version 2"),
        ({"seq": -1}, "seq is not an unsigned integer"),
        ({"total": 1}, "not the sum"),
        ({"files": [["app.mpy", bytes(32)]]}, r"not \[path, sha256, size\]"),
        ({"files": [["app.mpy", bytes(32), -1]]}, "size is not a byte count"),
        ({"cert": "text"}, "cert is not a byte string"),
        ({"version": "v1"}, "not X.Y.Z"),
        ({"hw": "ESP 32"}, "hardware class"),
    ],
)
def test_malformed_manifest_is_refused(chain: Chain, changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(BadManifest, match=reason):
        verify_manifest(resigned(chain, chain.manifest(), **changes), chain.root_public)


def test_oversized_manifest_is_refused_before_decoding(chain: Chain) -> None:
    with pytest.raises(BadManifest, match=f"exceeds {MAX_MANIFEST_BYTES}"):
        decode_manifest(b"\x00" * (MAX_MANIFEST_BYTES + 1))


def test_needing_a_newer_boot_part_is_refused(chain: Chain) -> None:
    with pytest.raises(BootTooOld, match="boot part version 2; this one is 1"):
        verify_manifest(chain.manifest(boot_min=2), chain.root_public, boot_version=1)


def test_a_revocation_list_older_than_one_seen_is_refused(chain: Chain) -> None:
    with pytest.raises(BadRevocations, match="revocation list 1 is older than list 2"):
        verify_manifest(chain.manifest(), chain.root_public, revocations_seen=2)


def test_a_certificate_for_another_key_than_the_signer_is_refused(chain: Chain) -> None:
    # The release key signs, but carries a (valid, root-signed) certificate of another key.
    other = seeded_key("another certified key")
    signed = chain.manifest(certificate=chain.certificate(other))
    with pytest.raises(BadManifestSignature, match="the certificate is for key"):
        verify_manifest(signed, chain.root_public)


def test_cheap_checks_come_before_any_signature(chain: Chain) -> None:
    # A stale manifest is refused as stale even with a forged chain: no Ed25519 work spent.
    forged = chain.manifest(seq=3, certificate=chain.certificate(by=seeded_key("x")))
    with pytest.raises(StaleRelease):
        verify_manifest(forged, chain.root_public, installed_seq=5)
    with pytest.raises(BadCertificate):
        verify_manifest(forged, chain.root_public, installed_seq=2)


def test_every_single_byte_change_is_refused(chain: Chain) -> None:
    signed = chain.manifest()
    for i in range(len(signed)):
        tampered = bytearray(signed)
        tampered[i] ^= 0x04
        with pytest.raises(ReleaseRefused):
            verify_manifest(bytes(tampered), chain.root_public)
