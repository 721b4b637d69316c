"""A release's manifest, checked on the board before any file of it is downloaded.

Usage::

    import manifest
    from errors import ReleaseRefused
    try:
        m = manifest.verify(data, root_key, installed_seq, "esp32", now=None,
                            revocations_seen=seen, boot_version=slots.BOOT_VERSION,
                            free_bytes=free)
    except ReleaseRefused as e:
        report("rejected", e.reason, str(e))     # nothing installed, nothing changed
    # m.seq, m.version, m.files ([(path, sha256, size)]), m.total, m.boot_min, m.mpy,
    # m.revocations_seq: persist it, so an older revocation list is refused from now on.

    # The same in slices, so an asyncio app keeps sampling during the seconds it takes:
    for result in manifest.verify_steps(data, root_key, installed_seq, "esp32"):
        await asyncio.sleep(0)
    m = result

    # Each file as its blocks arrive (a file not listed, or longer than declared, stops it):
    check = manifest.FileCheck(m, "app.mpy")
    check.update(block)          # raises FileTooLarge past the declared size
    check.finish()               # raises FileMismatch if short or another SHA-256

The format (fleet/manifest.py and fleet/certs.py make it, and say which SUIT element of
RFC 9124 each field carries): a COSE_Sign1 by a release key over a map with ``seq``,
``version``, ``hw``, ``boot_min``, ``mpy``, ``created``, ``files``, ``total``, and the
release key's certificate (``cert``) and the root's revocation list (``revocations``), both
COSE_Sign1 by the root key, the only key a board holds. Checked in this order, each refusal
a ``ReleaseRefused`` whose ``reason`` goes into health:

1. form: at most 8 KB, a COSE_Sign1 (else ``BadManifestSignature``: unsigned), a map with
   exactly the fields above, plain file names that do not shadow the boot part, no repeats,
   ``total`` the sum of the sizes (else ``BadManifest``);
2. what costs nothing, before any signature: ``seq`` above ``installed_seq``
   (``StaleRelease``), ``hw`` (``WrongHardware``), ``boot_min`` (``BootTooOld``), ``total``
   within ``free_bytes`` (``TooLarge``). These fields are unverified here, so they are only
   used to refuse; a forged manifest costs the board no Ed25519 check;
3. the chain: the certificate signed by the root, for role "release", its kid that of its
   key, valid at ``now`` if the board knows the time (``BadCertificate``,
   ``CertificateExpired``); the revocation list signed by the root and its seq not below
   ``revocations_seen`` (``BadRevocations``); the release key not in it (``KeyRevoked``); the
   manifest signed by that key (``BadManifestSignature``).

Pure: no I/O, no clock (``now`` is passed in; None skips validity). Three Ed25519 checks in
all (see ``cose`` and ``ed25519``); OTA-only, so it is imported only during an update.
"""

import binascii
import hashlib

import cbor
import cose
from errors import (
    BadCertificate,
    BadManifest,
    BadManifestSignature,
    BadRevocations,
    BootTooOld,
    CborError,
    CertificateExpired,
    FileMismatch,
    FileTooLarge,
    KeyRevoked,
    SignatureError,
    StaleRelease,
    TooLarge,
    UnlistedFile,
    WrongHardware,
)

try:
    from micropython import const
except ImportError:

    def const(x):  # type: ignore[misc]  # CPython: const is the identity
        return x


MAX_MANIFEST_BYTES = const(8192)
MAX_FILES = const(64)
# Each map's fields besides "type" and "v"; those in _UINTS are unsigned integers.
_FIELDS = (
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
)
_CERT_FIELDS = ("serial", "role", "kid", "key", "not_before", "not_after")
_LIST_FIELDS = ("seq", "revoked", "issued")
_UINTS = (
    "seq",
    "serial",
    "boot_min",
    "mpy",
    "created",
    "total",
    "not_before",
    "not_after",
    "issued",
)
_BOOT_PART = ("boot", "slots", "flashfs", "main")


class Manifest:
    """What a verified manifest says; ``verify`` returns it only when the chain holds."""

    def __init__(self, body, kid):
        self.seq = body["seq"]
        self.version = body["version"]
        self.hw = body["hw"]
        self.boot_min = body["boot_min"]
        self.mpy = body["mpy"]
        self.created = body["created"]
        self.files = [(f[0], f[1], f[2]) for f in body["files"]]  # (path, sha256, size)
        self.total = body["total"]
        self.kid = kid
        self.revocations_seq = 0  # set once the revocation list verified

    def entry(self, path):
        """(sha256, size) of ``path``; ``UnlistedFile`` if the manifest does not list it."""
        for name, digest, size in self.files:
            if name == path:
                return digest, size
        raise UnlistedFile("file %r is not in the manifest" % path)


class FileCheck:
    """One file checked against its entry as its bytes arrive; refuses a byte too many at
    once, so an endless download stops at the declared size."""

    def __init__(self, manifest, path):
        self.path = path
        self.digest, self.size = manifest.entry(path)
        self.received = 0
        self._hash = hashlib.sha256()

    def update(self, chunk):
        n = self.received + len(chunk)
        if n > self.size:
            raise FileTooLarge("file %r: more than the %d bytes declared" % (self.path, self.size))
        self._hash.update(chunk)
        self.received = n

    def finish(self):
        if self.received != self.size:
            raise FileMismatch("file %r: %d of %d bytes" % (self.path, self.received, self.size))
        if self._hash.digest() != self.digest:
            raise FileMismatch("file %r: SHA-256 is not the manifest's" % self.path)


def _uint(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _map(data, kind, fields, what, error):
    """The CBOR map ``data``, of type ``kind`` and version 1, with exactly ``fields`` besides."""
    try:
        body = cbor.loads(data)
    except CborError as e:
        raise error("%s: not CBOR (%s)" % (what, e)) from None
    if not isinstance(body, dict) or body.get("type") != kind or body.get("v") != 1:
        raise error("%s: not a version 1 %r map" % (what, kind))
    if len(body) != len(fields) + 2:
        raise error("%s: fields other than %s" % (what, ", ".join(fields)))
    for key in fields:
        if key not in body:
            raise error("%s: lacks %s" % (what, key))
        if key in _UINTS and not _uint(body[key]):
            raise error("%s: %s is not an unsigned integer" % (what, key))
    return body


def _plain_name(path):
    """A file name in the slot: ASCII letters, digits, ``_.-``; no directory, not hidden, not
    a boot part module (the slot comes first on sys.path: it would shadow them)."""
    if not isinstance(path, str) or not 0 < len(path) <= 48 or path[0] in ".-" or ".." in path:
        return False
    for c in path:
        if ord(c) > 127 or not (c.isalpha() or c.isdigit() or c in "_.-"):
            return False
    return path.split(".")[0].lower() not in _BOOT_PART  # FAT: "Slots.mpy" is "slots.mpy"


def _hex(kid):
    return binascii.hexlify(kid).decode()


def _decode(data):
    """(manifest body, kid) of a manifest whose form passes; its signature not checked."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise BadManifest("manifest of %d bytes exceeds %d" % (len(data), MAX_MANIFEST_BYTES))
    try:
        protected, payload = cose.unverified(data)
    except SignatureError as e:
        raise BadManifestSignature("manifest is not signed: %s" % e) from None
    body = _map(payload, "manifest", _FIELDS, "manifest", BadManifest)
    for key in ("version", "hw"):
        if not isinstance(body[key], str):
            raise BadManifest("manifest: %s is not text" % key)
    for key in ("cert", "revocations"):
        if not isinstance(body[key], bytes):
            raise BadManifest("manifest: %s is not a byte string" % key)
    files = body["files"]
    if not isinstance(files, list) or not 0 < len(files) <= MAX_FILES:
        raise BadManifest("manifest: files is not a list of 1 to %d entries" % MAX_FILES)
    total = 0
    seen = []
    for f in files:
        if not isinstance(f, list) or len(f) != 3:
            raise BadManifest("manifest: a file entry is not [path, sha256, size]")
        path = f[0]
        if not _plain_name(path) or path.lower() in seen:
            raise BadManifest("manifest: %r is not an app file's plain name, or twice" % (path,))
        seen.append(path.lower())
        if not isinstance(f[1], bytes) or len(f[1]) != 32 or not _uint(f[2]):
            raise BadManifest("manifest: %r: not a 32-byte SHA-256 and a size" % path)
        total += f[2]
    if total != body["total"]:
        raise BadManifest("manifest: total %d is not the sum of the sizes" % body["total"])
    return body, protected.get(cose.KID)


def listed(data):
    """{path: (sha256, size)} of a manifest verified before (a slot's ``release.cose``): its
    form is checked again, its signatures are not. What it lists is only a hint of what to
    copy; every byte copied is checked against the new manifest."""
    body, _ = _decode(data)
    return {f[0]: (f[1], f[2]) for f in body["files"]}


def _signed(data, key, what, signer, error, step_bits):
    """The payload of COSE_Sign1 ``data`` once ``key`` verified it, yielding meanwhile."""
    try:
        for item in cose.verify_steps(data, key, b"", step_bits):
            if item is None:
                yield
            else:
                return item[1]
    except SignatureError as e:
        raise error("%s: not signed by the %s key (%s)" % (what, signer, e)) from None
    raise error(what + ": no result")  # unreachable: verify_steps ends with one


def verify_steps(
    data,
    root_key,
    installed_seq,
    hw,
    now=None,
    revocations_seen=0,
    boot_version=None,
    free_bytes=None,
    step_bits=16,
):
    """``verify`` as a generator: it yields None while the signatures are checked and,
    last, the ``Manifest``; it raises as ``verify`` does. ``step_bits`` is passed on to
    ``ed25519.verify_steps``."""
    if not isinstance(data, bytes):
        data = bytes(data)  # a caller's buffer must not change between the checks
    body, kid = _decode(data)
    if body["seq"] <= installed_seq:
        raise StaleRelease(
            "release seq %d is not above the installed seq %d" % (body["seq"], installed_seq)
        )
    if body["hw"] != hw:
        raise WrongHardware("release is for hardware %r, not %r" % (body["hw"], hw))
    if boot_version is not None and body["boot_min"] > boot_version:
        raise BootTooOld(
            "release needs boot part version %d; this one is %d" % (body["boot_min"], boot_version)
        )
    if free_bytes is not None and body["total"] > free_bytes:
        raise TooLarge("release needs %d bytes; %d are free" % (body["total"], free_bytes))
    cert, revocations = body["cert"], body["revocations"]
    result = Manifest(body, kid)
    body = None  # keep only what the result needs while the signatures are checked
    yield

    # The certificate: by the root, for role "release", its kid the key's, valid now.
    payload = yield from _signed(cert, root_key, "certificate", "root", BadCertificate, step_bits)
    cert = _map(payload, "cert", _CERT_FIELDS, "certificate", BadCertificate)
    key = cert["key"]
    if cert["role"] != "release":
        raise BadCertificate("certificate is for role %r, not 'release'" % (cert["role"],))
    if (
        not isinstance(key, bytes)
        or len(key) != 32
        or hashlib.sha256(key).digest()[:8] != cert["kid"]
    ):
        raise BadCertificate("certificate: key is not 32 bytes, or kid is not the key's")
    if now is not None and not cert["not_before"] <= now <= cert["not_after"]:
        raise CertificateExpired(
            "certificate of key %s is valid from %d to %d, not at %d"
            % (_hex(cert["kid"]), cert["not_before"], cert["not_after"], now)
        )
    # The revocation list: by the root, not older than one seen, not naming this key.
    payload = yield from _signed(
        revocations, root_key, "revocation list", "root", BadRevocations, step_bits
    )
    listed = _map(payload, "revocations", _LIST_FIELDS, "revocation list", BadRevocations)
    payload = revocations = None
    if listed["seq"] < revocations_seen:
        raise BadRevocations(
            "revocation list %d is older than list %d, already seen"
            % (listed["seq"], revocations_seen)
        )
    if not isinstance(listed["revoked"], list):
        raise BadRevocations("revocation list: revoked is not a list")
    if cert["kid"] in listed["revoked"]:
        raise KeyRevoked(
            "release key %s is revoked (revocation list %d)" % (_hex(cert["kid"]), listed["seq"])
        )
    # The manifest, by the key the root certified.
    if kid != cert["kid"]:
        raise BadManifestSignature(
            "manifest names key %s; the certificate is for key %s"
            % (_hex(kid) if isinstance(kid, bytes) else "none", _hex(cert["kid"]))
        )
    yield from _signed(data, key, "manifest", "certified release", BadManifestSignature, step_bits)
    result.revocations_seq = listed["seq"]
    yield result


def verify(data, root_key, installed_seq, hw, **state):
    """The ``Manifest`` in ``data`` (a manifest's COSE_Sign1 bytes) if the chain from
    ``root_key`` (32 bytes) vouches for it and it is for this board: above
    ``installed_seq``, for hardware class ``hw``; and, as keywords of ``verify_steps``,
    within ``boot_version`` and ``free_bytes`` when given, the certificate valid at ``now``
    (Unix seconds) when given, the revocation list not older than ``revocations_seen``.
    Raises a ``ReleaseRefused``."""
    for result in verify_steps(data, root_key, installed_seq, hw, **state):
        if result is not None:
            return result
