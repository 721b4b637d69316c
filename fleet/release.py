"""Releases of the board application: built, signed, shown and verified on the host.

``simpul release build`` compiles the application's files with mpy-cross
(``hw.firmware_tools.build``), signs a manifest for them with the fleet's release key
(``fleet.manifest``) and writes one file an operator can copy::

    release file = {
        "format": "simpul-release",
        "v": 1,
        "manifest": bstr,           ; the manifest's COSE_Sign1, exactly as a board gets it
        "files": {* path => bstr},  ; each file's bytes, as installed into a slot
    }

What is the application: every ``firmware/*.py`` except the **boot part**, ``boot.py``,
``slots.py``, ``flashfs.py`` and ``main.py``, which sit at the board's root outside both slots
and which OTA never replaces (so an update can never break what chooses the slot to boot;
and MicroPython runs ``main.py`` from the root, never from ``sys.path``). ``board.py``,
``pins.py`` and ``config.py`` are application: ``main.py`` imports them from the slot, the
boot part does not, and a fix to a driver's bus or the config's fields must be able to ship;
a broken one is caught by the trial boot like any other app bug. The boot part's version is
``slots.BOOT_VERSION``; a release names the lowest it needs (``--boot-min``, default 1).

``simpul release verify FILE --root-pub KEY`` exits 0 only if the whole chain verifies:
root → certificate (role, validity now) → not revoked → manifest signature → every file's
size and SHA-256, no file missing or unlisted, and the total; with ``--installed-seq``,
``--hw``, ``--free-bytes``… it also refuses what a board in that state would.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fleet import keys as fleet_keys
from fleet.certs import decode_certificate, decode_revocations, iso, verify_certificate
from fleet.errors import BadManifest, BuildError, FleetError, KeyRevoked, ReleaseRefused
from fleet.keyfiles import load_public_key, write_private
from fleet.manifest import (
    HW_RE,
    VERSION_RE,
    Manifest,
    VerifiedManifest,
    check_files,
    decode_manifest,
    file_entries,
    sign_manifest,
    verify_manifest,
)
from gateway.codec import cose
from hw.firmware_tools import BOOT_PART, FIRMWARE_DIR

RELEASE_FORMAT: Final = "simpul-release"
FORMAT_VERSION: Final = 1
DEFAULT_HW: Final = "esp32"
DEFAULT_BOOT_MIN: Final = 1
#: Largest release file read, in bytes.
MAX_RELEASE_BYTES: Final = 16 * 1024 * 1024
_FIELDS: Final = frozenset({"format", "v", "manifest", "files"})


@dataclass(frozen=True)
class Release:
    """A decoded release file; trusted only as :func:`verify_release` returns it."""

    manifest_bytes: bytes
    manifest: Manifest
    files: dict[str, bytes]


@dataclass(frozen=True)
class VerifiedRelease:
    release: Release
    verified: VerifiedManifest


def app_sources(src: Path = FIRMWARE_DIR) -> list[Path]:
    """The application's source files in ``src``: every ``*.py`` but the boot part's."""
    return [p for p in sorted(src.glob("*.py")) if p.stem not in BOOT_PART]


def compile_app(src: Path, out_dir: Path, arch: str) -> dict[str, bytes]:
    """Every application file of ``src`` compiled by mpy-cross: {"app.mpy": bytes, ...}."""
    from hw.firmware_tools.build import BuildError as MpyError
    from hw.firmware_tools.build import compile_file

    sources = app_sources(src)
    if not sources:
        raise BuildError(f"no application files in {src}")
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}
    for source in sources:
        try:
            files[source.stem + ".mpy"] = compile_file(source, out_dir, arch).read_bytes()
        except MpyError as exc:
            raise BuildError(f"mpy-cross refused {exc}") from None
    return files


def mpy_abi(files: dict[str, bytes]) -> int:
    """The files' .mpy ABI as MicroPython's ``sys.implementation._mpy`` encodes it (version,
    sub-version and architecture); all files must share it."""
    headers = {content[:4] for content in files.values()}
    if len(headers) != 1:
        raise BuildError("the compiled files do not share one .mpy version and architecture")
    header = headers.pop()
    if len(header) < 4 or header[0] != ord("M"):
        raise BuildError("a compiled file is not .mpy")
    return header[1] | header[2] << 8


def encode_release(manifest: bytes, files: dict[str, bytes]) -> bytes:
    return bytes(
        cbor2.dumps(
            {
                "format": RELEASE_FORMAT,
                "v": FORMAT_VERSION,
                "manifest": manifest,
                "files": {path: files[path] for path in sorted(files)},
            }
        )
    )


def decode_release(data: bytes) -> Release:
    """The release file ``data``, its form checked, nothing verified."""
    if len(data) > MAX_RELEASE_BYTES:
        raise BadManifest(f"release file of {len(data)} bytes exceeds {MAX_RELEASE_BYTES}")
    try:
        body = cose.loads(data, "release file")
    except cose.CoseError as exc:
        raise BadManifest(str(exc)) from None
    if not isinstance(body, dict) or body.get("format") != RELEASE_FORMAT:
        raise BadManifest("not a simpul release file")
    if set(body) != _FIELDS:
        raise BadManifest(f"release file fields {sorted(map(str, body))}, not {sorted(_FIELDS)}")
    if body["v"] != FORMAT_VERSION or type(body["v"]) is not int:
        raise BadManifest(f"release file version {body['v']!r}, not {FORMAT_VERSION}")
    manifest_bytes, files = body["manifest"], body["files"]
    if not isinstance(manifest_bytes, bytes):
        raise BadManifest("release file: manifest is not a byte string")
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, bytes) for k, v in files.items()
    ):
        raise BadManifest("release file: files is not a map of names to bytes")
    return Release(manifest_bytes, decode_manifest(manifest_bytes), files)


def verify_release(
    data: bytes,
    root: Ed25519PublicKey | bytes,
    *,
    now: int | None,
    installed_seq: int = 0,
    hw: str | None = None,
    revocations_seen: int = 0,
    boot_version: int | None = None,
    free_bytes: int | None = None,
) -> VerifiedRelease:
    """The release in ``data`` if its whole chain verifies from ``root`` and its files are
    the manifest's; raise a :class:`~fleet.errors.ReleaseRefused` naming the first failure."""
    release = decode_release(data)
    verified = verify_manifest(
        release.manifest_bytes,
        root,
        installed_seq=installed_seq,
        hw=hw,
        now=now,
        revocations_seen=revocations_seen,
        boot_version=boot_version,
        free_bytes=free_bytes,
    )
    check_files(verified.manifest, release.files)
    return VerifiedRelease(release, verified)


def build_release(
    fleet_dir: Path,
    *,
    version: str,
    hw: str = DEFAULT_HW,
    boot_min: int = DEFAULT_BOOT_MIN,
    src: Path = FIRMWARE_DIR,
    arch: str = "xtensawin",
    now: int,
) -> tuple[bytes, VerifiedRelease]:
    """Compile, sign and self-verify a release with the fleet's current release key."""
    if not VERSION_RE.match(version):
        raise BuildError(f"version {version!r} is not X.Y.Z")
    if not HW_RE.match(hw):
        raise BuildError(f"hardware class {hw!r} is not a name of a-z, 0-9 and -")
    signer, root = _usable_signer(fleet_dir, now)
    with tempfile.TemporaryDirectory(prefix="simpul-release-") as tmp:
        files = compile_app(src, Path(tmp), arch)
    return _sign_release(fleet_dir, signer, root, files, version, hw, boot_min, now)


def resign_release(fleet_dir: Path, data: bytes, *, now: int) -> tuple[bytes, VerifiedRelease]:
    """The release file ``data``'s files and version signed again under the next seq: how a
    fleet takes boards back to a release they left (a board never installs a lower seq than
    it has run, so going back is going forward to the same files)."""
    old = decode_release(data)
    signer, root = _usable_signer(fleet_dir, now)
    check_files(old.manifest, old.files)
    manifest = old.manifest
    return _sign_release(
        fleet_dir,
        signer,
        root,
        dict(old.files),
        manifest.version,
        manifest.hw,
        manifest.boot_min,
        now,
    )


def _usable_signer(fleet_dir: Path, now: int) -> tuple[fleet_keys.Signer, bytes]:
    signer = fleet_keys.load_signer(fleet_dir)
    root = fleet_keys.root_public_key(fleet_dir)
    # The key must be usable now, before a sequence number is spent on it.
    verify_certificate(signer.certificate, root, now=now)
    if signer.kid in decode_revocations(signer.revocations).revoked:
        raise KeyRevoked(f"release key {signer.kid.hex()} is revoked: rotate the keys")
    return signer, root


def _sign_release(
    fleet_dir: Path,
    signer: fleet_keys.Signer,
    root: bytes,
    files: dict[str, bytes],
    version: str,
    hw: str,
    boot_min: int,
    now: int,
) -> tuple[bytes, VerifiedRelease]:
    seq = fleet_keys.reserve_release_seq(fleet_dir)
    manifest = sign_manifest(
        signer.key,
        seq=seq,
        version=version,
        hw=hw,
        boot_min=boot_min,
        mpy=mpy_abi(files),
        created=now,
        files=file_entries(files),
        certificate=signer.certificate,
        revocations=signer.revocations,
    )
    data = encode_release(manifest, files)
    return data, verify_release(data, root, now=now)


def describe(release: Release) -> dict[str, Any]:
    """What ``release show`` prints, as plain data (nothing verified)."""
    m = release.manifest
    out: dict[str, Any] = {
        "seq": m.seq,
        "version": m.version,
        "hw": m.hw,
        "boot_min": m.boot_min,
        "mpy": m.mpy,
        "created": m.created,
        "total": m.total,
        "manifest_bytes": len(release.manifest_bytes),
        "signed_by": m.kid.hex() if m.kid else None,
        "files": [
            {
                "path": e.path,
                "size": e.size,
                "sha256": e.sha256.hex(),
                "present": e.path in release.files,
            }
            for e in m.files
        ],
        "unlisted_files": sorted(set(release.files) - {e.path for e in m.files}),
    }
    try:
        c = decode_certificate(m.certificate)
        out["certificate"] = {
            "kid": c.kid.hex(),
            "role": c.role,
            "serial": c.serial,
            "not_before": c.not_before,
            "not_after": c.not_after,
            "issuer": c.issuer.hex() if c.issuer else None,
        }
    except ReleaseRefused as exc:
        out["certificate"] = {"error": str(exc)}
    try:
        r = decode_revocations(m.revocations)
        out["revocations"] = {
            "seq": r.seq,
            "issued": r.issued,
            "revoked": [k.hex() for k in r.revoked],
            "issuer": r.issuer.hex() if r.issuer else None,
        }
    except ReleaseRefused as exc:
        out["revocations"] = {"error": str(exc)}
    return out


# --- simpul release ---------------------------------------------------------------------------


def add_commands(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``simpul release build|show|verify``."""
    release = groups.add_parser(
        "release",
        help="build, show and verify signed releases of the board application",
        description="Signed releases of the board application (see fleet/release.py).",
    )
    actions = release.add_subparsers(dest="release_command", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="compile the app, sign its manifest, write a release")
    build.add_argument("--version", dest="release_version", help="X.Y.Z (default: simpul's)")
    build.add_argument("--hw", default=DEFAULT_HW, help="hardware class (default: %(default)s)")
    build.add_argument(
        "--boot-min",
        type=int,
        default=DEFAULT_BOOT_MIN,
        help="lowest boot part version it runs on (default: %(default)s)",
    )
    build.add_argument(
        "--out", type=Path, help="release file (default: ./simpul-VERSION-HW-SEQ.release)"
    )
    build.add_argument("--src", type=Path, default=FIRMWARE_DIR, help="the firmware directory")
    build.add_argument(
        "--arch", default="xtensawin", help="mpy-cross -march (default: %(default)s)"
    )
    build.add_argument("--fleet-dir", type=Path, help="the fleet directory (see simpul fleet keys)")
    build.set_defaults(handler=_build_command)

    show = actions.add_parser("show", help="what a release file holds (nothing verified)")
    show.add_argument("file", type=Path)
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=_show_command)

    verify = actions.add_parser("verify", help="exit 0 only if the release's whole chain verifies")
    verify.add_argument("file", type=Path)
    verify.add_argument(
        "--root-pub", type=Path, required=True, metavar="KEY", help="root public key"
    )
    verify.add_argument("--installed-seq", type=int, default=0, help="refuse seq at or below this")
    verify.add_argument("--hw", help="refuse another hardware class")
    verify.add_argument("--free-bytes", type=int, help="refuse a total above this")
    verify.add_argument("--boot-version", type=int, help="refuse a boot_min above this")
    verify.add_argument("--revocations-seen", type=int, default=0, help="refuse an older list")
    verify.add_argument("--json", action="store_true", help="print JSON")
    verify.set_defaults(handler=_verify_command)


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as fp:
            data = fp.read(MAX_RELEASE_BYTES + 1)
    except OSError as exc:
        raise BuildError(f"cannot read {path}: {exc.strerror}") from None
    return data


def _build_command(args: argparse.Namespace) -> int:
    from fleet.cli import simpul_version

    fleet_dir = args.fleet_dir or fleet_keys.default_fleet_dir()
    version = args.release_version or simpul_version()
    try:
        data, verified = build_release(
            fleet_dir,
            version=version,
            hw=args.hw,
            boot_min=args.boot_min,
            src=args.src,
            arch=args.arch,
            now=int(time.time()),
        )
        m = verified.verified.manifest
        out = args.out or Path(f"simpul-{m.version}-{m.hw}-{m.seq}.release")
        write_private(out, data, mode=0o644)  # never over another release; a release is public
    except (FleetError, OSError) as exc:
        print(f"simpul release build: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"release {m.version} seq {m.seq} for {m.hw}: {len(m.files)} files, {m.total} bytes,"
        f" manifest {len(m.encoded)} bytes, signed by release key {m.kid.hex() if m.kid else '?'}"
    )
    print(f"written to {out}")
    return 0


def _show_command(args: argparse.Namespace) -> int:
    try:
        release = decode_release(_read(args.file))
    except (ReleaseRefused, BuildError) as exc:
        print(f"simpul release show: {exc}", file=sys.stderr)
        return 2
    info = describe(release)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"release {info['version']}  seq {info['seq']}  hardware {info['hw']}  (not verified)")
    print(
        f"  created {iso(info['created'])}, boot part >= {info['boot_min']}, mpy {info['mpy']:#06x}"
    )
    print(
        f"  {len(info['files'])} files, {info['total']} bytes;"
        f" manifest {info['manifest_bytes']} bytes"
    )
    for f in info["files"]:
        missing = "" if f["present"] else "  MISSING"
        print(f"    {f['path']:<16} {f['size']:>7}  sha256 {f['sha256'][:16]}…{missing}")
    for path in info["unlisted_files"]:
        print(f"    {path:<16} NOT IN THE MANIFEST")
    print(f"  signed by release key {info['signed_by']}")
    c = info["certificate"]
    if "error" in c:
        print(f"  certificate: {c['error']}")
    else:
        print(
            f"  certificate {c['serial']}: key {c['kid']}, role {c['role']}, issued by root"
            f" {c['issuer']}, valid {iso(c['not_before'])} .. {iso(c['not_after'])}"
        )
    r = info["revocations"]
    if "error" in r:
        print(f"  revocation list: {r['error']}")
    else:
        revoked = ", ".join(r["revoked"]) or "none"
        print(f"  revocation list {r['seq']}, issued {iso(r['issued'])}: revokes {revoked}")
    return 0


def _verify_command(args: argparse.Namespace) -> int:
    try:
        root = load_public_key(args.root_pub)
        data = _read(args.file)
    except FleetError as exc:
        print(f"simpul release verify: error: {exc}", file=sys.stderr)
        return 2
    try:
        found = verify_release(
            data,
            root,
            now=int(time.time()),
            installed_seq=args.installed_seq,
            hw=args.hw,
            revocations_seen=args.revocations_seen,
            boot_version=args.boot_version,
            free_bytes=args.free_bytes,
        )
    except ReleaseRefused as exc:
        if args.json:
            print(json.dumps({"verified": False, "reason": exc.reason, "error": str(exc)}))
        else:
            print(f"refused ({exc.reason}): {exc}")
        return 1
    m, cert = found.verified.manifest, found.verified.certificate
    if args.json:
        print(json.dumps({"verified": True, **describe(found.release)}, indent=2))
        return 0
    print(
        f"verified: release {m.version} seq {m.seq} for {m.hw}, {len(m.files)} files,"
        f" {m.total} bytes"
    )
    print(
        f"  root {cose.key_id(root).hex()} -> release key {cert.kid.hex()} (certificate"
        f" {cert.serial}, valid to {iso(cert.not_after)}), revocation list"
        f" {found.verified.revocations.seq}: not revoked"
    )
    return 0
