"""What the gateway serves of its cached releases: ``/ota/<seq>/manifest`` and
``/ota/<seq>/<file>``, block by block (RFC 7959 Block2).

The resource (:class:`gateway.intake.resources.OtaResource`) calls two plain functions:
:meth:`ReleaseFiles.content` finds what a path names, and :func:`block` cuts one block of it.
A cached release never changes (a seq is one release, ``gateway.ota.cache``), so contents are
kept in memory once read, within a byte budget, and their ETag (the first 8 bytes of the
content's SHA-256) is computed once. Only files the cached manifest lists are served, and
each is checked against the manifest's digest when read from disk, so a damaged file on the
gateway's card is refused rather than sent to every board.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fleet.errors import FleetError
from fleet.manifest import PATH_RE, decode_manifest
from gateway.errors import BadQuery, DamagedRelease, UnknownRelease
from gateway.ota.cache import MANIFEST_NAME
from gateway.store.releases import ReleaseTable

#: Block size exponent of the largest block served: 2 ** (6 + 4) = 1024 bytes.
MAX_SZX: Final = 6
#: ETag: this many leading bytes of the content's SHA-256.
ETAG_BYTES: Final = 8
#: Content-Formats (IANA CoAP registry): application/cose; cose-type="cose-sign1", and
#: application/octet-stream.
COSE_SIGN1: Final = 18
OCTET_STREAM: Final = 42
_SEQ_RE: Final = re.compile(r"^[1-9][0-9]{0,18}$")


@dataclass(frozen=True, slots=True)
class Content:
    """One servable thing: its bytes, ETag and Content-Format."""

    data: bytes
    etag: bytes
    content_format: int


def etag_of(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:ETAG_BYTES]


def block(content: Content, number: int, szx: int) -> tuple[bytes, bool]:
    """Block ``number`` of size ``2 ** (szx + 4)`` and whether more follow; :class:`BadQuery`
    for a block past the end (block 0 of empty content is empty)."""
    size = 1 << (szx + 4)
    start = number * size
    if start >= len(content.data) and start > 0:
        raise BadQuery(f"Block2 {number} is past the end ({len(content.data)} bytes)")
    return content.data[start : start + size], start + size < len(content.data)


class ReleaseFiles:
    """The cached releases as the CoAP resource sees them, on a database connection of its own.

    ``memory_bytes`` bounds the contents kept in memory (least recently used go first).
    """

    def __init__(self, db_path: Path, state_dir: Path, *, memory_bytes: int = 4 << 20) -> None:
        self._table = ReleaseTable(db_path)
        self._state_dir = state_dir
        self._memory_bytes = memory_bytes
        self._kept: OrderedDict[tuple[int, str], Content] = OrderedDict()
        self._kept_bytes = 0

    def close(self) -> None:
        self._table.close()

    def content(self, path: tuple[str, ...]) -> Content:
        """What ``path`` (the segments after ``ota``) names; :class:`UnknownRelease` if nothing."""
        if len(path) != 2:
            raise UnknownRelease("OTA paths are /ota/<seq>/manifest or /ota/<seq>/<file>")
        seq_text, name = path
        if not _SEQ_RE.match(seq_text):
            raise UnknownRelease("the release seq must be a positive decimal number")
        if name != MANIFEST_NAME and not PATH_RE.match(name):
            raise UnknownRelease("no such file name in any release")
        key = (int(seq_text), name)
        found = self._kept.get(key)
        if found is not None and not self._table.has_release(key[0]):  # evicted meanwhile
            self._forget(key[0])
            found = None
        if found is not None:
            self._kept.move_to_end(key)
            return found
        found = self._load(*key)
        self._keep(key, found)
        return found

    def _load(self, seq: int, name: str) -> Content:
        cached = self._table.release(seq)
        if cached is None:
            raise UnknownRelease(f"release {seq} is not cached here")
        if name == MANIFEST_NAME:
            return Content(cached.manifest, etag_of(cached.manifest), COSE_SIGN1)
        try:
            entry = decode_manifest(cached.manifest).entry(name)
        except FleetError:
            raise UnknownRelease(f"release {seq} has no file {name}") from None
        try:
            data = (self._state_dir / cached.directory / name).read_bytes()
        except OSError as exc:
            raise DamagedRelease(f"release {seq} file {name}: {exc.strerror}") from None
        if len(data) != entry.size or hashlib.sha256(data).digest() != entry.sha256:
            raise DamagedRelease(f"release {seq} file {name} is damaged on the gateway")
        return Content(data, etag_of(data), OCTET_STREAM)

    def _forget(self, seq: int) -> None:
        for key in [k for k in self._kept if k[0] == seq]:
            self._kept_bytes -= len(self._kept.pop(key).data)

    def _keep(self, key: tuple[int, str], content: Content) -> None:
        if len(content.data) > self._memory_bytes:
            return
        self._kept[key] = content
        self._kept_bytes += len(content.data)
        while self._kept_bytes > self._memory_bytes:
            _, dropped = self._kept.popitem(last=False)
            self._kept_bytes -= len(dropped.data)
