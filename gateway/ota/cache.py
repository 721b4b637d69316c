"""The gateway's cache of signed releases.

A release enters the cache only after the checks a board makes (``fleet.release.verify_release``:
the chain from the configured root key, the certificate valid now, the revocation list not
older than the newest the cache has seen, the release key not revoked, the manifest's
signature, every file's size and SHA-256) and for this gateway's hardware class. So the cache
never holds what a board would refuse, and it keeps the newest revocation list any release
carried: a release carrying an older list is refused.

The cache holds several releases (a rollout may move boards to one while others still run
an older one); a board's own anti-rollback counter stops it installing an older seq. A seq
is a release: adding the same release again changes nothing, a different one with a seq
already cached is refused. A release carrying a newer revocation list that revokes the key
of cached releases evicts them (and the desired releases naming them) as it is added: they
would no longer verify.

Files go to ``<state_dir>/releases/<seq>/``: written and fsynced in a temporary directory
beside it, renamed into place, then the row is committed. A crash leaves either no row (and
at most a stray directory that the next add of that seq replaces) or the whole release.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fleet.errors import FleetError
from fleet.keyfiles import load_public_key
from fleet.manifest import decode_manifest
from fleet.release import MAX_RELEASE_BYTES, VerifiedRelease, verify_release
from gateway.config import GatewayConfig
from gateway.errors import ConfigError, ReleaseRejected, StateDirError
from gateway.store.releases import CachedRelease, ReleaseTable
from gateway.store.schema import now_ms

#: The resource name of a release's manifest, so no file may carry it.
MANIFEST_NAME: Final = "manifest"


def load_root_key(config: GatewayConfig) -> bytes | None:
    """The configured root public key (32 raw bytes), or None when none is configured;
    :class:`ConfigError` naming the setting if the file is missing or not a key."""
    path = config.ota.root_public_key
    if path is None:
        return None
    try:
        return load_public_key(path)
    except FleetError as exc:
        raise ConfigError(f"gateway.ota.root_public_key: {exc}") from None


def read_release_file(path: Path) -> bytes:
    """The bytes of the release file at ``path``, refusing what is no file or too large."""
    try:
        if not path.is_file():
            raise ReleaseRejected(f"{path} is not a file", "malformed")
        size = path.stat().st_size
        if size > MAX_RELEASE_BYTES:
            raise ReleaseRejected(
                f"{path} has {size} bytes, over the {MAX_RELEASE_BYTES} a release may have",
                "too_large",
            )
        return path.read_bytes()
    except OSError as exc:
        raise ReleaseRejected(f"cannot read {path}: {exc.strerror}", "malformed") from None


@dataclass(frozen=True, slots=True)
class Added:
    """What :meth:`ReleaseCache.add` did: the cached release, and whether it was new."""

    release: CachedRelease
    new: bool
    #: Cached releases removed because the new release's revocation list revokes their key.
    evicted: tuple[int, ...] = ()


class ReleaseCache:
    """The cached releases of one gateway: its state directory and the OTA tables."""

    def __init__(self, config: GatewayConfig, root: bytes) -> None:
        self._root = root
        self._hw = config.ota.hw
        self._state_dir = config.state_dir
        self._dir = config.releases_dir
        self._table = ReleaseTable(config.db_path)

    def close(self) -> None:
        self._table.close()

    def add(self, data: bytes, *, now: int | None = None) -> Added:
        """Verify the release file ``data`` and cache it; :class:`ReleaseRejected` (nothing
        written) if a board would refuse it or it clashes with a cached release.

        ``now``: Unix seconds for the certificate's validity; default the clock."""
        with self._locked():
            return self._add(data, int(time.time()) if now is None else now)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One add at a time per state directory (the command line, later the control plane):
        another add's rename, eviction or sweep must not interleave with this one's."""
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._dir, os.O_RDONLY)  # the directory itself: no lock file left
        except OSError as exc:
            raise StateDirError(f"cannot lock {self._dir}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _add(self, data: bytes, now: int) -> Added:
        verified = self._verify(data, now)
        manifest = verified.release.manifest
        cached = self._table.release(manifest.seq)
        if cached is not None:
            if cached.manifest == manifest.encoded:
                return Added(cached, new=False)
            raise ReleaseRejected(
                f"release seq {manifest.seq} is already cached with another manifest"
                f" (version {cached.version})",
                "seq_taken",
            )
        evict = self._revoked_by(verified)
        self._sweep()
        directory = self._write_files(manifest.seq, verified.release.files)
        row = CachedRelease(
            seq=manifest.seq,
            version=manifest.version,
            hw=manifest.hw,
            manifest=manifest.encoded,
            revocations=verified.verified.revocations.seq,
            total=manifest.total,
            directory=str(directory.relative_to(self._state_dir)),
            added_ms=now_ms(),
        )
        try:
            self._table.add_release(row, manifest.revocations, [r.seq for r in evict])
        except sqlite3.IntegrityError:
            shutil.rmtree(directory, ignore_errors=True)
            raise ReleaseRejected(
                f"release seq {manifest.seq} was cached meanwhile", "seq_taken"
            ) from None
        for release in evict:
            shutil.rmtree(self._state_dir / release.directory, ignore_errors=True)
        return Added(row, new=True, evicted=tuple(r.seq for r in evict))

    def _revoked_by(self, verified: VerifiedRelease) -> list[CachedRelease]:
        """Cached releases whose release key the new release's (newer) revocation list revokes:
        they would no longer verify, so they leave the cache with it."""
        revocations = verified.verified.revocations
        if revocations.seq <= self._table.revocations_seq() or not revocations.revoked:
            return []
        return [
            cached
            for cached in self._table.releases()
            if decode_manifest(cached.manifest).kid in revocations.revoked
        ]

    def _sweep(self) -> None:
        """Remove directories no row names: an add's temporary one, or a release's, left by a
        crash before its commit or before an eviction's cleanup (under the lock, no add is
        under way)."""
        if not self._dir.is_dir():
            return
        cached = {str(r.seq) for r in self._table.releases()}
        for entry in self._dir.iterdir():
            if entry.is_dir() and entry.name not in cached:
                shutil.rmtree(entry, ignore_errors=True)

    def _verify(self, data: bytes, now: int) -> VerifiedRelease:
        try:
            verified = verify_release(
                data,
                self._root,
                now=now,
                hw=self._hw,
                revocations_seen=self._table.revocations_seq(),
            )
        except FleetError as exc:
            raise ReleaseRejected(f"release refused ({exc.reason}): {exc}", exc.reason) from None
        if MANIFEST_NAME in verified.release.files:
            raise ReleaseRejected(
                f"release has a file named {MANIFEST_NAME!r}, which is its manifest's name"
                " on the gateway",
                "unlisted_file",
            )
        return verified

    def _write_files(self, seq: int, files: dict[str, bytes]) -> Path:
        final = self._dir / str(seq)
        incoming = self._dir / f".incoming-{seq}-{os.getpid()}"
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(incoming, ignore_errors=True)
            incoming.mkdir()
            for name, content in files.items():
                # Names are manifest paths (fleet.manifest.PATH_RE): no separators, no dot first.
                with (incoming / name).open("wb") as fp:
                    fp.write(content)
                    fp.flush()
                    os.fsync(fp.fileno())
            _fsync_dir(incoming)
            if final.exists():  # left by a crash before its row was committed
                shutil.rmtree(final)
            incoming.rename(final)
            _fsync_dir(self._dir)
        except OSError as exc:
            shutil.rmtree(incoming, ignore_errors=True)
            raise StateDirError(f"cannot write release files under {self._dir}: {exc}") from None
        return final

    def releases(self) -> list[CachedRelease]:
        return self._table.releases()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
