"""The batch file uplink: every batch appended to one CBOR sequence file (RFC 8742).

``simpul verify --file <directory>/batches.cbor`` reads it as it is. Each append is followed
by ``fsync`` before the cursor moves, and the cursor is stored with the file's size at that
point; on start the file is cut back to that size, so a batch half-written when the gateway
died (or written but not yet counted) is dropped and written again whole: the file is always
a sequence of complete batches, a batch at most once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from gateway.store.batch_log import StoredBatch
from gateway.uplinks.delivery import Sender

UPLINK_NAME: Final = "batch_file"
FILE_NAME: Final = "batches.cbor"


class BatchFileSender(Sender[StoredBatch]):
    """Appends batches to ``<directory>/batches.cbor``."""

    def __init__(self, directory: Path, *, resume_at: int | None) -> None:
        self.directory = directory
        self.path = directory / FILE_NAME
        #: The file size stored with the cursor: everything after it is rewritten.
        self.resume_at = resume_at
        self._fd: int | None = None
        self._written: list[int] = []
        self._size = 0

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        size = os.fstat(fd).st_size
        if self.resume_at is not None and self.resume_at < size:
            os.ftruncate(fd, self.resume_at)
            os.fsync(fd)
            size = self.resume_at
        os.lseek(fd, size, os.SEEK_SET)
        if created:
            _fsync_dir(self.directory)
        self._fd, self._size = fd, size
        self._written.clear()

    def send(self, batch: StoredBatch) -> None:
        assert self._fd is not None
        view = memoryview(batch.encoded)
        while view:
            done = os.write(self._fd, view)
            view = view[done:]
        self._size += len(batch.encoded)
        self._written.append(batch.seq)

    def confirmed(self, timeout_s: float) -> list[int]:
        if not self._written or self._fd is None:
            return []
        os.fsync(self._fd)  # one fsync for everything written this round
        done, self._written = self._written, []
        self.resume_at = self._size
        return done

    def cursor_note(self) -> int | None:
        return self._size

    def close(self, *, graceful: bool) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        # Whatever was written but not confirmed is cut off when it opens again.
        self._written.clear()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["FILE_NAME", "UPLINK_NAME", "BatchFileSender"]
