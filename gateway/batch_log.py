"""The batches table: signed batches kept beside the outbox until every batch uplink has them.

Tables (in the gateway's one SQLite file, next to ``readings``)::

    batches         seq -> the COSE_Sign1 bytes, digest, outbox ids covered, readings count
    batch_chain     one row: the ChainState after the newest batch, and the batcher's cursor
                    (the last outbox id in a batch)
    batch_progress  per batch uplink: the last seq delivered (and, for the file uplink, the
                    file's size right after it)
    outbox_counters persistent counters: readings and batches pruned or dropped

The batcher appends a batch, its chain state and its cursor in **one** transaction, with
``synchronous = FULL``: after any crash either all three are on disk or none is, so a seq is
never signed twice with different content (a fork) and no reading is batched twice or
skipped. The append is a compare-and-set on the chain state, so two batchers (one left over
from a killed gateway) cannot both extend the chain.

Each batch uplink reads batches after its own cursor (:meth:`BatchLog.fetch_after`) and
advances it in a short transaction of its own (:meth:`BatchLog.mark_delivered`).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

from gateway.batch import ChainState
from gateway.errors import GatewayError
from gateway.store import connect

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS batches (
    seq        INTEGER PRIMARY KEY,   -- the batch's place in the gateway's chain, from 1
    first_id   INTEGER NOT NULL,      -- outbox ids (readings.id) it covers, inclusive
    last_id    INTEGER NOT NULL,
    readings   INTEGER NOT NULL,      -- how many readings it carries
    created_ms INTEGER NOT NULL,      -- when it was signed, Unix ms
    digest     BLOB    NOT NULL,      -- SHA-256 of encoded: the next batch's prev
    encoded    BLOB    NOT NULL       -- the COSE_Sign1 bytes, sent exactly as they are
);
CREATE TABLE IF NOT EXISTS batch_chain (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    state      BLOB    NOT NULL,      -- ChainState.encode() after the newest batch
    batched_id INTEGER NOT NULL       -- the batcher's cursor: last outbox id in a batch
);
CREATE TABLE IF NOT EXISTS batch_progress (
    uplink        TEXT PRIMARY KEY,
    delivered_seq INTEGER NOT NULL,
    file_offset   INTEGER             -- file uplink: the file's size after that batch
);
CREATE TABLE IF NOT EXISTS outbox_counters (
    name  TEXT PRIMARY KEY,           -- pruned_readings, dropped_batches, ...
    value INTEGER NOT NULL
);
"""

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


@dataclass(frozen=True, slots=True)
class ChainHead:
    """Where the stored chain stands: its state and the batcher's cursor."""

    state: ChainState
    batched_id: int
    #: The stored bytes of ``state`` (compared, not decoded, by the next append).
    raw: bytes | None


def prepare_batches(db: sqlite3.Connection) -> None:
    """Create the batch tables if needed (idempotent; any process may call it)."""
    db.executescript(SCHEMA)


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def read_counters(db: sqlite3.Connection) -> dict[str, int]:
    """The persistent outbox counters by name (absent ones are 0)."""
    return {
        name: int(value) for name, value in db.execute("SELECT name, value FROM outbox_counters")
    }


def add_counter(db: sqlite3.Connection, name: str, amount: int) -> None:
    """Add to a persistent counter; call inside the transaction that did the counted thing."""
    if amount:
        db.execute(
            "INSERT INTO outbox_counters (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, amount),
        )


class BatchLog:
    """One process's connection to the batch tables (the batcher's, or one uplink's)."""

    def __init__(self, path: Path, *, synchronous: str = "NORMAL") -> None:
        self._db = connect(path)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute(f"PRAGMA synchronous = {synchronous}")
        prepare_batches(self._db)

    @property
    def db(self) -> sqlite3.Connection:
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


__all__ = [
    "SCHEMA",
    "BatchLog",
    "ChainHead",
    "ChainMoved",
    "StoredBatch",
    "add_counter",
    "prepare_batches",
    "read_counters",
    "transaction",
]
