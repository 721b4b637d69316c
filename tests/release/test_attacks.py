"""Attacks on a release, checked on the host (``simpul release verify``, fleet/release.py):
each its own test, each refused with the reason a board would give, nothing changed.
tests/firmware/mpy/mpy_test_manifest.py makes the same attacks on the board's checks."""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest

from fleet.errors import (
    BadCertificate,
    BadManifestSignature,
    CertificateExpired,
    FileMismatch,
    FileTooLarge,
    KeyRevoked,
    ReleaseRefused,
    StaleRelease,
    TooLarge,
    UnlistedFile,
    WrongHardware,
)
from fleet.release import encode_release, verify_release
from gateway.codec import cose
from tests.release.chain import APP_FILES, DAY, NOW, Chain, seeded_key
from tests.release.test_keys import simpul

#: When the board (or operator) checks: a day after the chain's keys were certified.
AT = NOW + DAY


def release(manifest: bytes, files: dict[str, bytes] | None = None) -> bytes:
    return encode_release(manifest, APP_FILES if files is None else files)


def refused(
    data: bytes, chain: Chain, error: type[ReleaseRefused], match: str, **state: int | str
) -> ReleaseRefused:
    """``data`` is refused with ``error``; the bytes handed in are unchanged."""
    before = bytes(data)
    with pytest.raises(error, match=match) as caught:
        verify_release(data, chain.root_public, now=AT, **state)  # type: ignore[arg-type]
    assert type(caught.value) is error
    assert data == before
    return caught.value


def test_a_good_release_verifies(chain: Chain) -> None:
    found = verify_release(
        release(chain.manifest()),
        chain.root_public,
        now=AT,
        installed_seq=6,
        hw="esp32",
        free_bytes=10_000,
    )
    assert found.verified.manifest.seq == 7


def test_unsigned_manifest_is_refused(chain: Chain) -> None:
    bare = cbor2.loads(chain.manifest()).value[2]  # the payload alone: a manifest nobody signed
    error = refused(release(bare), chain, BadManifestSignature, "manifest is not signed: untagged")
    assert error.reason == "signature"
    parts = cbor2.loads(chain.manifest()).value
    no_signature = cbor2.dumps(cbor2.CBORTag(18, [parts[0], {}, parts[2], b""]))
    refused(release(no_signature), chain, BadManifestSignature, "not signed: signature of 0 bytes")
    zeros = cbor2.dumps(cbor2.CBORTag(18, [parts[0], {}, parts[2], bytes(64)]))
    refused(release(zeros), chain, BadManifestSignature, "signature does not verify")


def test_manifest_signed_by_a_wrong_key_is_refused(chain: Chain) -> None:
    # Signed by another key under the certified key's kid, carrying the genuine certificate.
    intruder = seeded_key("intruder")
    body = cbor2.loads(chain.manifest()).value[2]
    forged = cose.sign(intruder, body, kid=chain.release_kid)
    refused(
        release(forged),
        chain,
        BadManifestSignature,
        f"by key {chain.release_kid.hex()}: signature does not verify",
    )


def test_revoked_release_key_is_refused(chain: Chain) -> None:
    revoked = chain.revocations((chain.release_kid,), seq=2)
    error = refused(
        release(chain.manifest(revocations=revoked)),
        chain,
        KeyRevoked,
        f"release key {chain.release_kid.hex()} is revoked",
    )
    assert error.reason == "revoked"


def test_release_key_not_certified_by_the_root_is_refused(chain: Chain) -> None:
    self_signed = chain.certificate(by=chain.release)
    refused(
        release(chain.manifest(certificate=self_signed)),
        chain,
        BadCertificate,
        "certificate: not signed by the root key",
    )
    # A root-signed revocation list does not make up for it, nor the root's kid in the header.
    intruder = seeded_key("intruder")
    cert = cose.sign(
        intruder, cbor2.loads(chain.certificate()).value[2], kid=cose.key_id(chain.root_public)
    )
    refused(
        release(chain.manifest(certificate=cert)),
        chain,
        BadCertificate,
        "not signed by the root key",
    )


def test_expired_certificate_is_refused(chain: Chain) -> None:
    short = chain.certificate(not_before=NOW - 10 * DAY, not_after=NOW)
    error = refused(
        release(chain.manifest(certificate=short)), chain, CertificateExpired, "is valid from"
    )
    assert error.reason == "expired"
    # A board that has no time yet cannot tell: validity is checked when there is a clock.
    verify_release(release(chain.manifest(certificate=short)), chain.root_public, now=None)


def test_bit_flipped_manifest_is_refused(chain: Chain) -> None:
    signed = chain.manifest()
    digest = cbor2.loads(cbor2.loads(signed).value[2])["files"][0][1]
    at = signed.index(digest) + 5
    for bit in (0x01, 0x80):
        flipped = bytearray(signed)
        flipped[at] ^= bit
        refused(release(bytes(flipped)), chain, BadManifestSignature, "signature does not verify")


def test_bit_flipped_file_is_refused(chain: Chain) -> None:
    files = dict(APP_FILES)
    flipped = bytearray(files["cbor.mpy"])
    flipped[100] ^= 0x10
    files["cbor.mpy"] = bytes(flipped)
    error = refused(
        release(chain.manifest(), files),
        chain,
        FileMismatch,
        "'cbor.mpy' is not the one the manifest names",
    )
    assert error.reason == "file_digest"


def test_replayed_older_or_equal_sequence_is_refused(chain: Chain) -> None:
    old = release(chain.manifest(seq=7))  # validly signed, once genuine
    error = refused(
        old, chain, StaleRelease, "seq 7 is not above the installed seq 7", installed_seq=7
    )
    assert error.reason == "stale"
    refused(old, chain, StaleRelease, "not above the installed seq 8", installed_seq=8)


def test_wrong_hardware_class_is_refused(chain: Chain) -> None:
    refused(
        release(chain.manifest(hw="esp32-s3")),
        chain,
        WrongHardware,
        "for hardware 'esp32-s3', not 'esp32'",
        hw="esp32",
    )


def test_file_larger_than_declared_is_refused(chain: Chain) -> None:
    files = dict(APP_FILES)
    files["app.mpy"] += b"\x00" * 4096
    refused(
        release(chain.manifest(), files),
        chain,
        FileTooLarge,
        "'app.mpy' has 5124 bytes; the manifest declares 1028",
    )


def test_file_not_in_the_manifest_is_refused(chain: Chain) -> None:
    files = {**APP_FILES, "boot.mpy": b"import evil"}
    error = refused(
        release(chain.manifest(), files), chain, UnlistedFile, "'boot.mpy' is not in the manifest"
    )
    assert error.reason == "unlisted_file"


def test_total_over_the_free_space_is_refused(chain: Chain) -> None:
    total = sum(map(len, APP_FILES.values()))
    verify_release(release(chain.manifest()), chain.root_public, now=AT, free_bytes=total)
    refused(
        release(chain.manifest()),
        chain,
        TooLarge,
        f"needs {total} bytes; {total - 1} are free",
        free_bytes=total - 1,
    )


@pytest.mark.parametrize(
    ("attack", "reason"),
    [("flipped_file", "file_digest"), ("revoked", "revoked"), ("stale", "stale")],
)
def test_release_verify_command_exits_1_naming_the_reason(
    chain: Chain, tmp_path: Path, attack: str, reason: str
) -> None:
    root_pub = tmp_path / "root.pub"
    root_pub.write_bytes(chain.root_public)
    # The command checks validity at the real time: a certificate valid until 2100.
    fresh = chain.certificate(not_before=0, not_after=4_102_444_800)
    files = dict(APP_FILES)
    manifest = chain.manifest(certificate=fresh)
    args: list[str] = []
    if attack == "flipped_file":
        files["app.mpy"] = files["app.mpy"][:-1] + b"\x00"
    elif attack == "revoked":
        manifest = chain.manifest(
            certificate=fresh, revocations=chain.revocations((chain.release_kid,), seq=2)
        )
    else:
        args = ["--installed-seq", "7"]
    bad = tmp_path / "bad.release"
    bad.write_bytes(release(manifest, files))
    before = bad.read_bytes()
    ok = simpul("release", "verify", str(bad), "--root-pub", str(root_pub))
    if attack == "stale":
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert ok.stdout.startswith("verified: release 1.2.3 seq 7 for esp32, 3 files")
    done = simpul("release", "verify", str(bad), "--root-pub", str(root_pub), *args)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith(f"refused ({reason}): ")
    assert bad.read_bytes() == before
