"""The release manifest: what a board checks before it downloads a single file.

Pure functions between bytes and plain objects: no files, no clock. A manifest is a
COSE_Sign1 (``gateway.codec.cose``) by a release key, protected ``{1: -8, 4: release kid}``,
over a CBOR map with text keys. Each field and the element of SUIT's information model
(RFC 9124 §4) it carries::

    manifest payload = {
        "type": "manifest",              ; (domain separation: root and release keys sign
                                         ;  several kinds of thing; none passes for another)
        "v": 1,                          ; Version ID of the Manifest Structure
        "seq": uint,                     ; Monotonic Sequence Number: a board installs only
                                         ;  a seq above its installed one (anti-rollback)
        "version": tstr,                 ; Manifest Text Information: "X.Y.Z", for people
        "hw": tstr,                      ; Class ID (Vendor ID is implied: a release verifies
                                         ;  only under the fleet's root key)
        "boot_min": uint,                ; Required Image Version List: the one image OTA
                                         ;  never replaces, the boot part (slots.BOOT_VERSION)
        "mpy": uint,                     ; Payload Format: the .mpy ABI, as MicroPython's
                                         ;  sys.implementation._mpy encodes it
        "created": uint,                 ; (when it was built, Unix seconds; informational)
        "files": [* [path: tstr,         ; Component Identifier and Storage Location: a file
                     sha256: bstr .size 32,  ;  name in the slot; Payload Digests
                     size: uint]],       ;  Size of Payload, per file
        "total": uint,                   ; Size of Payload of the whole: the sum of sizes,
                                         ;  checked against free space before downloading
        "cert": bstr,                    ; Delegation Chain: the release key's certificate,
        "revocations": bstr,             ;  and the root's current revocation list (fleet.certs)
    }

The COSE_Sign1 itself is SUIT's *Signature* envelope element. Elements not used: Vendor ID
(implied), Precursor Image Digest (releases are whole), Expiration Time (the certificate's
``not_after`` bounds it), Processing Steps, Dependencies, Encryption, XIP Address, Aliases.

:func:`verify_manifest` checks in the board's order (``firmware/manifest.py``): form;
then what costs nothing (sequence, hardware class, boot part, sizes) so hostile or stale
manifests cost no signature checks; then the chain: certificate by the root (role,
validity), revocation list by the root and not older than one seen, the release key not
revoked, and the manifest by the certified key. Fields read before the signatures are only
ever used to refuse.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fleet.certs import (
    Certificate,
    RevocationList,
    bytes_field,
    require_fields,
    uint_field,
    verify_certificate,
    verify_revocations,
)
from fleet.errors import (
    BadManifest,
    BadManifestSignature,
    BootTooOld,
    FileMismatch,
    FileTooLarge,
    KeyRevoked,
    StaleRelease,
    TooLarge,
    UnlistedFile,
    WrongHardware,
)
from gateway.codec import cose
from gateway.errors import GatewayError
from hw.firmware_tools import BOOT_PART

FORMAT_VERSION: Final = 1
#: Largest manifest a board reads, in bytes (both sides refuse larger ones).
MAX_MANIFEST_BYTES: Final = 8192
#: Most files in one release (bounds the board's heap while it holds the list).
MAX_FILES: Final = 64
DIGEST_BYTES: Final = 32
_FIELDS: Final = frozenset(
    {
        "type",
        "v",
        "seq",
        "version",
        "hw",
        "boot_min",
        "mpy",
        "created",
        "files",
        "total",
        "cert",
        "revocations",
    }
)
VERSION_RE: Final = re.compile(r"^(0|[1-9][0-9]{0,5})(\.(0|[1-9][0-9]{0,5})){2}$")
HW_RE: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
PATH_RE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,47}$")


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a release: its name in the slot, SHA-256 and size in bytes."""

    path: str
    sha256: bytes
    size: int


@dataclass(frozen=True, slots=True)
class Manifest:
    """A decoded manifest; trusted only as :func:`verify_manifest` returns it."""

    seq: int
    version: str
    hw: str
    boot_min: int
    mpy: int
    created: int
    files: tuple[FileEntry, ...]
    total: int
    certificate: bytes
    revocations: bytes
    #: The protected header's kid: the release key that (says it) signed the manifest.
    kid: bytes | None
    encoded: bytes

    def entry(self, path: str) -> FileEntry:
        """The entry for ``path``; :class:`UnlistedFile` if the manifest does not list it."""
        for entry in self.files:
            if entry.path == path:
                return entry
        raise UnlistedFile(f"file {path!r} is not in the manifest")


@dataclass(frozen=True, slots=True)
class VerifiedManifest:
    """What :func:`verify_manifest` found: the manifest and the chain that vouches for it."""

    manifest: Manifest
    certificate: Certificate
    revocations: RevocationList


def file_entries(files: Mapping[str, bytes]) -> tuple[FileEntry, ...]:
    """Entries for ``files`` (path to content), sorted by path."""
    return tuple(
        FileEntry(path, hashlib.sha256(files[path]).digest(), len(files[path]))
        for path in sorted(files)
    )


def sign_manifest(
    release_key: Ed25519PrivateKey,
    *,
    seq: int,
    version: str,
    hw: str,
    boot_min: int,
    mpy: int,
    created: int,
    files: Iterable[FileEntry],
    certificate: bytes,
    revocations: bytes,
) -> bytes:
    """The manifest, signed by ``release_key``; checks what it writes as a board would."""
    entries = sorted(files, key=lambda e: e.path)
    payload: dict[str, Any] = {
        "type": "manifest",
        "v": FORMAT_VERSION,
        "seq": seq,
        "version": version,
        "hw": hw,
        "boot_min": boot_min,
        "mpy": mpy,
        "created": created,
        "files": [[e.path, e.sha256, e.size] for e in entries],
        "total": sum(e.size for e in entries),
        "cert": certificate,
        "revocations": revocations,
    }
    kid = cose.key_id(cose.public_bytes(release_key))
    signed = cose.sign(release_key, cbor2.dumps(payload), kid=kid)
    decode_manifest(signed)  # refuse to sign what a board would refuse to read
    return signed


def decode_manifest(data: bytes) -> Manifest:
    """The manifest in ``data``, its form checked and no signature: for ``release show``."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise BadManifest(f"manifest of {len(data)} bytes exceeds {MAX_MANIFEST_BYTES}")
    try:
        message = cose.decode(data)
    except cose.CoseError as exc:
        raise BadManifestSignature(f"manifest is not signed: {exc}") from None
    try:
        body = cose.loads(message.payload, "manifest payload")
    except cose.CoseError as exc:
        raise BadManifest(str(exc)) from None
    if not isinstance(body, dict):
        raise BadManifest("manifest payload is not a map")
    require_fields(body, _FIELDS, "manifest", "manifest", BadManifest)
    seq = uint_field(body, "seq", "manifest", BadManifest)
    version = _text(body, "version", VERSION_RE, "X.Y.Z")
    hw = _text(body, "hw", HW_RE, "a hardware class name")
    files = _files(body["files"])
    total = uint_field(body, "total", "manifest", BadManifest)
    if total != sum(e.size for e in files):
        raise BadManifest(f"manifest total {total} is not the sum of its files' sizes")
    return Manifest(
        seq=seq,
        version=version,
        hw=hw,
        boot_min=uint_field(body, "boot_min", "manifest", BadManifest),
        mpy=uint_field(body, "mpy", "manifest", BadManifest),
        created=uint_field(body, "created", "manifest", BadManifest),
        files=files,
        total=total,
        certificate=_bstr(body, "cert"),
        revocations=_bstr(body, "revocations"),
        kid=message.kid,
        encoded=data,
    )


def verify_manifest(
    data: bytes,
    root: Ed25519PublicKey | bytes,
    *,
    installed_seq: int = 0,
    hw: str | None = None,
    now: int | None = None,
    revocations_seen: int = 0,
    boot_version: int | None = None,
    free_bytes: int | None = None,
) -> VerifiedManifest:
    """The manifest in ``data`` if the whole chain from ``root`` vouches for it and a board
    in the state given would install it; a :class:`~fleet.errors.ReleaseRefused` otherwise.

    ``installed_seq``: the board's installed sequence number (the release must be above it);
    ``hw``: its hardware class; ``now``: Unix seconds, or None for a board without time
    (certificate validity unchecked); ``revocations_seen``: the highest revocation list seq
    the board has seen; ``boot_version``: its boot part's version; ``free_bytes``: the space
    the files may take. None skips that check.
    """
    manifest = decode_manifest(data)
    if manifest.seq <= installed_seq:
        raise StaleRelease(
            f"release seq {manifest.seq} is not above the installed seq {installed_seq}"
        )
    if hw is not None and manifest.hw != hw:
        raise WrongHardware(f"release is for hardware {manifest.hw!r}, not {hw!r}")
    if boot_version is not None and manifest.boot_min > boot_version:
        raise BootTooOld(
            f"release needs boot part version {manifest.boot_min}; this one is {boot_version}"
        )
    if free_bytes is not None and manifest.total > free_bytes:
        raise TooLarge(f"release needs {manifest.total} bytes; {free_bytes} are free")
    certificate = verify_certificate(manifest.certificate, root, now=now)
    revocations = verify_revocations(manifest.revocations, root, seen=revocations_seen)
    if certificate.kid in revocations.revoked:
        raise KeyRevoked(
            f"release key {certificate.kid.hex()} is revoked (revocation list {revocations.seq})"
        )
    if manifest.kid != certificate.kid:
        named = manifest.kid.hex() if manifest.kid else "no key"
        raise BadManifestSignature(
            f"manifest names {named}; the certificate is for key {certificate.kid.hex()}"
        )
    try:
        cose.verify(data, certificate.key)
    except GatewayError as exc:
        raise BadManifestSignature(f"manifest: {exc}") from None
    return VerifiedManifest(manifest, certificate, revocations)


def check_files(manifest: Manifest, files: Mapping[str, bytes]) -> None:
    """Every file of ``files`` is in ``manifest`` with its size and SHA-256, and every file
    the manifest lists is there; raise the first mismatch."""
    for path in files:
        manifest.entry(path)
    for entry in manifest.files:
        content = files.get(entry.path)
        if content is None:
            raise FileMismatch(f"file {entry.path!r} is listed but absent")
        if len(content) > entry.size:
            raise FileTooLarge(
                f"file {entry.path!r} has {len(content)} bytes; the manifest declares {entry.size}"
            )
        if len(content) != entry.size or hashlib.sha256(content).digest() != entry.sha256:
            raise FileMismatch(f"file {entry.path!r} is not the one the manifest names")


def _text(body: dict[Any, Any], key: str, pattern: re.Pattern[str], what: str) -> str:
    value = body[key]
    if not isinstance(value, str) or not pattern.match(value):
        raise BadManifest(f"manifest {key} {value!r} is not {what}")
    return value


def _bstr(body: dict[Any, Any], key: str) -> bytes:
    value = body[key]
    if not isinstance(value, bytes):
        raise BadManifest(f"manifest {key} is not a byte string")
    return value


def _files(raw: object) -> tuple[FileEntry, ...]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_FILES:
        raise BadManifest(f"manifest files is not a list of 1 to {MAX_FILES} entries")
    entries: list[FileEntry] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        if not isinstance(item, list) or len(item) != 3:
            raise BadManifest(f"manifest file {index} is not [path, sha256, size]")
        path, digest, size = item
        if not isinstance(path, str) or not PATH_RE.match(path) or ".." in path:
            raise BadManifest(f"manifest file {index}: path {path!r} is not a plain file name")
        # Compared without case: on a FAT filesystem "Slots.mpy" is "slots.mpy".
        if path.split(".")[0].lower() in BOOT_PART:
            raise BadManifest(f"manifest file {path!r} would shadow the boot part")
        if path.lower() in seen:
            raise BadManifest(f"manifest lists {path!r} twice")
        seen.add(path.lower())
        if not isinstance(digest, bytes) or len(digest) != DIGEST_BYTES:
            raise BadManifest(f"manifest file {path!r}: sha256 is not 32 bytes")
        if type(size) is not int or not 0 <= size < 2**31:
            raise BadManifest(f"manifest file {path!r}: size is not a byte count")
        entries.append(FileEntry(path, digest, size))
    return tuple(entries)


__all__ = [
    "MAX_MANIFEST_BYTES",
    "FileEntry",
    "Manifest",
    "VerifiedManifest",
    "bytes_field",
    "check_files",
    "decode_manifest",
    "file_entries",
    "sign_manifest",
    "verify_manifest",
]
