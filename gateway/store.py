"""The durable store: one SQLite file in WAL mode, and the three ways the gateway uses it.

* :class:`StoreWriter` applies groups of jobs in *one* transaction each (group commit). It
  runs in the writer process (:mod:`gateway.writer`), which is the only place readings and
  the board registry are written; an acknowledgement is sent only after its group commits.
* :class:`Outbox` is one uplink's view of the ``readings`` table, which doubles as the
  outbox: its ``id`` (AUTOINCREMENT, so it never goes back even after old rows are pruned) is
  the position, and each uplink keeps its own cursor in ``uplink_progress``, advanced in its
  own short write transaction. Uplinks run in their own process (:mod:`gateway.uplinks`).
* :class:`StoreReader` answers the intake process's questions (registry, outbox positions).

Everything here is synchronous: each connection belongs to one thread of one process.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

from gateway.errors import StateDirError, StoreCorrupt, StoreUnavailable
from gateway.senml import Reading, Value, ValueKind

SCHEMA_VERSION: Final = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- outbox position, never reused
    board_id    TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    unit        TEXT,
    kind        TEXT    NOT NULL,                   -- v, vs, vb, vd or s (SenML field)
    value,                                          -- no affinity: stored exactly as it came
    time_ms     INTEGER NOT NULL,                   -- when measured, Unix epoch milliseconds
    received_ms INTEGER NOT NULL,                   -- when the gateway received it
    UNIQUE (board_id, name, time_ms)
);
CREATE TABLE IF NOT EXISTS boards (
    board_id      TEXT PRIMARY KEY,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    address       TEXT,                             -- last transport address, host:port
    last_seq      INTEGER,                          -- highest record sequence number seen
    missed        INTEGER NOT NULL DEFAULT 0,       -- records the board dropped (seq gaps)
    last_health   TEXT,                             -- last health report, JSON
    health_ms     INTEGER
);
CREATE TABLE IF NOT EXISTS uplink_progress (
    uplink       TEXT PRIMARY KEY,
    delivered_id INTEGER NOT NULL
);
"""

_INSERT_READING = (
    "INSERT OR IGNORE INTO readings (board_id, name, unit, kind, value, time_ms, received_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_TOUCH_BOARD = (
    "INSERT INTO boards (board_id, first_seen_ms, last_seen_ms, address) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (board_id) DO UPDATE SET last_seen_ms = max(last_seen_ms, excluded.last_seen_ms),"
    " address = coalesce(excluded.address, address)"
)
_HEAD_ID = "SELECT coalesce(max(id), 0) FROM readings"
#: Busy waits on the write lock (another process's cursor update, a checkpoint).
_BUSY_TIMEOUT_MS: Final = 5000


def now_ms() -> int:
    """Wall-clock time as integer Unix milliseconds."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class SequenceRange:
    """Board-scoped record sequence numbers a request carries (URI queries ``s`` and ``n``)."""

    first: int
    count: int


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """What a submission did once committed."""

    stored: int
    duplicates: int


class OutboxRow(NamedTuple):
    """One stored reading as an uplink sees it."""

    id: int
    board_id: str
    name: str
    unit: str | None
    kind: ValueKind
    value: Value
    time_ms: int
    received_ms: int


@dataclass
class Counters:
    """What this gateway process has done since it started (not persisted)."""

    readings_stored: int = 0
    duplicates: int = 0
    #: Requests refused, by reason (``bad_payload``, ``too_large``...).
    refused: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class BoardRecord:
    """A row of the board registry."""

    board_id: str
    first_seen_ms: int
    last_seen_ms: int
    address: str | None
    last_seq: int | None
    missed: int
    last_health: dict[str, Any] | None
    health_ms: int | None


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with a busy timeout."""
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        if read_only:
            db.execute("PRAGMA query_only = 1")
    except sqlite3.OperationalError as exc:
        raise StateDirError(f"cannot open database {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise _corrupt(path, exc) from None
    return db


def _corrupt(path: Path, exc: Exception) -> StoreCorrupt:
    return StoreCorrupt(f"{path}: SQLite cannot use this file ({exc}); it was left untouched")


def prepare(path: Path) -> None:
    """Create the schema if needed and switch to WAL; refuse a file SQLite cannot use.

    The daemon calls this before it starts any process, so a bad file is reported at once.
    """
    db = connect(path)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute(_HEAD_ID).fetchone()
    except sqlite3.DatabaseError as exc:
        raise _corrupt(path, exc) from None
    finally:
        db.close()


# -- writing (the writer process) -------------------------------------------------------


@dataclass(slots=True)
class ReadingsJob:
    """Decoded readings of one request, to be stored (duplicates ignored)."""

    readings: Sequence[Reading]
    address: str | None
    seq: SequenceRange | None
    received_ms: int


@dataclass(slots=True)
class HealthJob:
    """A board's health report, already encoded as JSON, for the registry."""

    board_id: str
    health_json: str
    address: str | None
    received_ms: int


Job = ReadingsJob | HealthJob
#: A job's outcome: what it did, or why it failed (the group's other jobs still commit).
Outcome = SubmitResult | None | StoreUnavailable
#: Seconds between WAL checkpoints while commits keep coming.
_CHECKPOINT_INTERVAL_S: Final = 0.5


class StoreWriter:
    """Applies groups of jobs, one transaction and one fsync per group.

    If a group fails, its jobs are retried one transaction each, so one bad job cannot fail
    the others. ``before_commit`` is called right before each COMMIT; tests use it to hold a
    transaction open and prove that nothing is acknowledged before it commits.
    """

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self._before_commit = before_commit
        self._db = connect(path)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute(f"PRAGMA synchronous = {synchronous}")
        # Checkpoints run in their own thread, not inside a COMMIT that boards wait on.
        self._db.execute("PRAGMA wal_autocheckpoint = 0")
        self._commits = threading.Event()
        self._stopping = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, args=(connect(path),), name="checkpoint", daemon=True
        )
        self._checkpointer.start()

    def close(self) -> None:
        self._stopping.set()
        self._commits.set()
        self._checkpointer.join()
        self._db.close()

    def commit(self, jobs: Sequence[Job]) -> list[Outcome]:
        """Apply ``jobs`` and commit; returns each job's outcome, in order."""
        try:
            return self._transaction(jobs)
        except Exception:
            # Rare path: apply each job in its own transaction (no savepoints on the hot one).
            outcomes: list[Outcome] = []
            for job in jobs:
                try:
                    outcomes.extend(self._transaction([job]))
                except Exception as exc:
                    outcomes.append(StoreUnavailable(f"store could not commit: {exc}"))
            return outcomes

    def _transaction(self, jobs: Sequence[Job]) -> list[Outcome]:
        db = self._db
        outcomes: list[Outcome] = []
        # The registry is touched once per board per group, however many requests it sent.
        seen: dict[str, tuple[int, str | None]] = {}
        try:
            db.execute("BEGIN IMMEDIATE")
            for job in jobs:
                at, address = job.received_ms, job.address
                if isinstance(job, ReadingsJob):
                    outcomes.append(_store_readings(db, job))
                    for board_id in {r.board_id for r in job.readings}:
                        seen[board_id] = (at, address or seen.get(board_id, (0, None))[1])
                else:
                    db.execute(_TOUCH_BOARD, (job.board_id, at, at, address))
                    db.execute(
                        "UPDATE boards SET last_health = ?, health_ms = ? WHERE board_id = ?",
                        (job.health_json, at, job.board_id),
                    )
                    outcomes.append(None)
            db.executemany(_TOUCH_BOARD, [(b, at, at, a) for b, (at, a) in seen.items()])
            if self._before_commit is not None:
                self._before_commit()
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
        self._commits.set()
        return outcomes

    def _checkpoint_loop(self, db: sqlite3.Connection) -> None:
        """Copy the WAL back into the database now and then, beside the writer.

        PASSIVE never blocks the writer (nor readers); the WAL restarts from its beginning
        once a checkpoint has caught up, which keeps it from growing without bound.
        """
        try:
            while not self._stopping.is_set():
                self._commits.wait()
                self._commits.clear()
                with contextlib.suppress(sqlite3.Error):  # busy now: the next round catches up
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self._stopping.wait(_CHECKPOINT_INTERVAL_S)
        finally:
            db.close()


def _store_readings(db: sqlite3.Connection, job: ReadingsJob) -> SubmitResult:
    at = job.received_ms
    cursor = db.executemany(
        _INSERT_READING,
        [(r.board_id, r.name, r.unit, r.kind, r.value, r.time_ms, at) for r in job.readings],
    )
    stored = max(cursor.rowcount, 0)
    if job.seq is not None:
        boards = {r.board_id for r in job.readings}
        if len(boards) == 1:
            board_id = next(iter(boards))
            db.execute(_TOUCH_BOARD, (board_id, at, at, job.address))
            _count_sequence(db, board_id, job.seq)
    return SubmitResult(stored=stored, duplicates=len(job.readings) - stored)


def _count_sequence(db: sqlite3.Connection, board_id: str, seq: SequenceRange) -> None:
    """Advance the board's sequence mark; a jump forward counts the skipped records as missed.

    Retransmissions and replays (``first`` at or below the mark) change nothing.
    """
    last_seq, missed = db.execute(
        "SELECT last_seq, missed FROM boards WHERE board_id = ?", (board_id,)
    ).fetchone()
    last = seq.first + seq.count - 1
    if last_seq is not None and seq.first > last_seq + 1:
        missed += seq.first - last_seq - 1
    if last_seq is None or last > last_seq:
        db.execute(
            "UPDATE boards SET last_seq = ?, missed = ? WHERE board_id = ?",
            (last, missed, board_id),
        )


# -- reading (the intake process) -------------------------------------------------------


class StoreReader:
    """Read-only queries for operators and tests, on a connection of its own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = connect(path, read_only=True)
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query (blocking; keep it small)."""
        with self._lock:
            if self._db is None:
                raise StoreUnavailable("store is closed")
            return self._db.execute(sql, tuple(params)).fetchall()

    @property
    def head_id(self) -> int:
        """Outbox position of the newest committed reading."""
        ((head,),) = self.read(_HEAD_ID)
        return int(head)

    def delivered_ids(self) -> dict[str, int]:
        """Each uplink's saved cursor, by uplink name."""
        return dict(self.read("SELECT uplink, delivered_id FROM uplink_progress"))

    def board(self, board_id: str) -> BoardRecord | None:
        """The registry entry of one board, or None if never heard from."""
        rows = self.read(
            "SELECT board_id, first_seen_ms, last_seen_ms, address, last_seq, missed,"
            " last_health, health_ms FROM boards WHERE board_id = ?",
            (board_id,),
        )
        if not rows:
            return None
        row = rows[0]
        health = json.loads(row[6]) if row[6] is not None else None
        return BoardRecord(row[0], row[1], row[2], row[3], row[4], row[5], health, row[7])

    def board_counts(self, online_since_ms: int) -> tuple[int, int]:
        """(boards ever seen, boards seen at or after ``online_since_ms``)."""
        ((seen, online),) = self.read(
            "SELECT count(*), count(*) FILTER (WHERE last_seen_ms >= ?) FROM boards",
            (online_since_ms,),
        )
        return seen, online


# -- the outbox (an uplink's process) ---------------------------------------------------


class Outbox:
    """One uplink's view of the readings table: rows after its cursor, oldest first.

    At-least-once: an uplink fetches, delivers, then marks delivered; after a crash between
    the last two it sees the same rows again. New rows are noticed by polling the outbox
    head, which is one index lookup.
    """

    def __init__(self, path: Path, uplink: str) -> None:
        self.uplink = uplink
        self._db = connect(path)
        # A cursor update lost in a power cut only means those rows are delivered again
        # (at-least-once), so it need not wait for an fsync, nor hold the writer up meanwhile.
        self._db.execute("PRAGMA synchronous = NORMAL")
        rows = self._db.execute(
            "SELECT delivered_id FROM uplink_progress WHERE uplink = ?", (uplink,)
        ).fetchall()
        self._delivered_id: int = rows[0][0] if rows else 0

    def close(self) -> None:
        self._db.close()

    @property
    def delivered_id(self) -> int:
        """Outbox position of the last reading this uplink delivered."""
        return self._delivered_id

    def head_id(self) -> int:
        """Outbox position of the newest committed reading."""
        (head,) = self._db.execute(_HEAD_ID).fetchone()
        return int(head)

    @property
    def backlog(self) -> int:
        """Readings committed but not yet delivered by this uplink (ids are dense)."""
        return max(self.head_id() - self._delivered_id, 0)

    def fetch(self, limit: int) -> list[OutboxRow]:
        """Up to ``limit`` undelivered rows, in outbox order."""
        rows = self._db.execute(
            "SELECT id, board_id, name, unit, kind, value, time_ms, received_ms FROM readings"
            " WHERE id > ? ORDER BY id LIMIT ?",
            (self._delivered_id, limit),
        ).fetchall()
        make = OutboxRow._make
        return [make(row) for row in rows]

    def mark_delivered(self, up_to_id: int) -> None:
        """Record (durably, in a short transaction) that rows up to ``up_to_id`` are delivered."""
        self._db.execute(
            "INSERT INTO uplink_progress (uplink, delivered_id) VALUES (?, ?)"
            " ON CONFLICT (uplink) DO UPDATE"
            " SET delivered_id = max(delivered_id, excluded.delivered_id)",
            (self.uplink, up_to_id),
        )
        self._delivered_id = max(self._delivered_id, up_to_id)

    def wait_for_rows(
        self, timeout_s: float, *, poll_s: float = 0.02, stop: Callable[[], bool] | None = None
    ) -> bool:
        """Whether rows after the cursor are committed, waiting up to ``timeout_s`` for them.

        ``stop`` is asked between polls; when it says so, the wait ends early (False).
        """
        deadline = time.monotonic() + timeout_s
        while self.head_id() <= self._delivered_id:
            if (stop is not None and stop()) or time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)
        return True
