"""Signed batches kept beside the outbox until every batch uplink has them.

Tables (defined in :mod:`gateway.store.schema`)::

    batches         seq -> the COSE_Sign1 bytes, digest, outbox ids covered, readings count
    batch_chain     one row: the ChainState after the newest batch, and the batcher's cursor
                    (the last outbox id in a batch)
    batch_progress  per batch uplink: the last seq delivered (and, for the file uplink, the
                    file's size right after it)

The batcher appends a batch, its chain state and its cursor in **one** transaction, with
``synchronous = FULL``: after any crash either all three are on disk or none is, so a seq is
never signed twice with different content (a fork) and no reading is batched twice or
skipped. The append is a compare-and-set on the chain state, so two batchers (one left over
from a killed gateway) cannot both extend the chain.

Each batch uplink reads batches after its own cursor through a :class:`BatchOutbox` and
advances it in a short transaction of its own.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from gateway.batches.format import ChainState
from gateway.errors import GatewayError
from gateway.store.schema import add_counter, connect, transaction

_FETCH = (
    "SELECT seq, first_id, last_id, readings, created_ms, digest, encoded FROM batches"
    " WHERE seq > ? ORDER BY seq LIMIT ?"
)


class ChainMoved(GatewayError, RuntimeError):
    """Another batcher extended the chain meanwhile; this one must reload and start again."""

    reason = "chain_moved"


class StoredBatch(NamedTuple):
    """A batch as the batch uplinks read it."""

    seq: int
    first_id: int
    last_id: int
    readings: int
    created_ms: int
    digest: bytes
    encoded: bytes

    @property
    def position(self) -> int:
        """Its place in the chain (what a batch uplink's cursor counts)."""
        return self.seq


@dataclass(frozen=True, slots=True)
class ChainHead:
    """Where the stored chain stands: its state and the batcher's cursor."""

    state: ChainState
    batched_id: int
    #: The stored bytes of ``state`` (compared, not decoded, by the next append).
    raw: bytes | None


class BatchLog:
    """One process's connection to the batch tables (the batcher's, or one uplink's)."""

    def __init__(self, path: Path, *, synchronous: str = "NORMAL") -> None:
        self._db = connect(path)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute(f"PRAGMA synchronous = {synchronous}")

    @property
    def db(self) -> sqlite3.Connection:
        """The connection, for reading the outbox rows to batch (:mod:`gateway.store.outbox`)."""
        return self._db

    def close(self) -> None:
        self._db.close()

    # -- the batcher ------------------------------------------------------------------

    def head(self) -> ChainHead:
        """The chain's state and the batcher's cursor as last committed."""
        row = self._db.execute("SELECT state, batched_id FROM batch_chain WHERE id = 1").fetchone()
        if row is None:
            return ChainHead(ChainState(), 0, None)
        return ChainHead(ChainState.decode(row[0]), int(row[1]), bytes(row[0]))

    def append(
        self,
        after: ChainHead,
        encoded: bytes,
        state: ChainState,
        *,
        first_id: int,
        last_id: int,
        readings: int,
        created_ms: int,
    ) -> ChainHead:
        """Store a batch built on ``after``, its new chain state and cursor, in one transaction.

        Raises :class:`ChainMoved` (nothing written) if the stored chain is no longer ``after``.
        """
        raw = state.encode()
        with transaction(self._db) as db:
            row = db.execute("SELECT state FROM batch_chain WHERE id = 1").fetchone()
            current = bytes(row[0]) if row is not None else None
            if current != after.raw:
                raise ChainMoved("the chain was extended by another batcher")
            db.execute(
                "INSERT INTO batches (seq, first_id, last_id, readings, created_ms, digest,"
                " encoded) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (state.seq, first_id, last_id, readings, created_ms, state.prev, encoded),
            )
            db.execute(
                "INSERT INTO batch_chain (id, state, batched_id) VALUES (1, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET state = excluded.state,"
                " batched_id = excluded.batched_id",
                (raw, last_id),
            )
        return ChainHead(state, last_id, raw)

    def skip_unsignable(self, after: ChainHead, up_to_id: int, invalid: int) -> None:
        """Count ``invalid`` readings that cannot be signed and, if nothing else is left to
        batch up to ``up_to_id``, move the batcher's cursor past them (chain unchanged)."""
        with transaction(self._db) as db:
            add_counter(db, "invalid_readings", invalid)
            if up_to_id:
                db.execute(
                    "INSERT INTO batch_chain (id, state, batched_id) VALUES (1, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET batched_id = max(batched_id, ?)",
                    (after.state.encode(), up_to_id, up_to_id),
                )

    # -- the batch uplinks ------------------------------------------------------------

    def progress(self, uplink: str) -> tuple[int, int | None]:
        """(last seq delivered, file offset noted with it) of one uplink; (0, None) at first."""
        row = self._db.execute(
            "SELECT delivered_seq, file_offset FROM batch_progress WHERE uplink = ?", (uplink,)
        ).fetchone()
        return (int(row[0]), row[1]) if row is not None else (0, None)

    def fetch_after(self, seq: int, limit: int) -> list[StoredBatch]:
        """Up to ``limit`` stored batches after ``seq``, in chain order."""
        make = StoredBatch._make
        return [make(row) for row in self._db.execute(_FETCH, (seq, limit))]

    def newest_seq(self) -> int:
        (seq,) = self._db.execute("SELECT coalesce(max(seq), 0) FROM batches").fetchone()
        return int(seq)

    def mark_delivered(self, uplink: str, seq: int, file_offset: int | None = None) -> None:
        """Advance an uplink's cursor to ``seq`` (never backwards) in a short transaction."""
        self._db.execute(
            "INSERT INTO batch_progress (uplink, delivered_seq, file_offset) VALUES (?, ?, ?)"
            " ON CONFLICT (uplink) DO UPDATE SET delivered_seq = excluded.delivered_seq,"
            " file_offset = excluded.file_offset WHERE excluded.delivered_seq >= delivered_seq",
            (uplink, seq, file_offset),
        )

    def wait_for_batches(
        self, after: int, timeout_s: float, *, poll_s: float = 0.02, stop: Callable[[], bool]
    ) -> bool:
        """Whether a batch after ``after`` is stored, polling up to ``timeout_s`` for one."""
        deadline = time.monotonic() + timeout_s
        while self.newest_seq() <= after:
            if stop() or time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)
        return True


class BatchOutbox:
    """One batch uplink's view of the batch log: a :class:`gateway.uplinks.delivery.Source`."""

    def __init__(self, batch_log: BatchLog, uplink: str) -> None:
        self.log = batch_log
        self.uplink = uplink

    def delivered(self) -> int:
        return self.log.progress(self.uplink)[0]

    def fetch_after(self, position: int, limit: int) -> list[StoredBatch]:
        return self.log.fetch_after(position, limit)

    def wait_after(self, position: int, timeout_s: float, stop: Callable[[], bool]) -> bool:
        return self.log.wait_for_batches(position, timeout_s, stop=stop)

    def mark_delivered(self, position: int, note: int | None) -> None:
        self.log.mark_delivered(self.uplink, position, note)


__all__ = [
    "BatchLog",
    "BatchOutbox",
    "ChainHead",
    "ChainMoved",
    "StoredBatch",
]
