"""The durable store: one SQLite file in WAL mode, written by a single thread.

Request handlers ``await store.submit(...)``; that puts one job on a queue and waits on a
future. The writer thread takes everything queued, applies it in *one* transaction, commits,
and only then resolves the futures: an acknowledgement always means "on disk". If a group
fails, its jobs are retried one transaction each, so one bad job cannot fail the others. When the
gateway is idle a lone request commits at once; under load the groups grow by themselves,
which is what keeps a fsync per commit affordable (group commit).

The ``readings`` table doubles as the **outbox**: its ``id`` (AUTOINCREMENT, so it never goes
back even after old rows are pruned) is the position, and each uplink keeps its own cursor
in ``uplink_progress``. Uplinks read through :meth:`Store.outbox` on a separate connection,
and are woken when a commit adds rows, so they never poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
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


class _Job:
    """Work for the writer thread; ``apply`` runs inside the group's transaction."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future = future

    def apply(self, db: sqlite3.Connection) -> Any:
        raise NotImplementedError


class _ReadingsJob(_Job):
    __slots__ = ("address", "readings", "received_ms", "seq")

    def __init__(
        self,
        future: asyncio.Future[Any],
        readings: Sequence[Reading],
        address: str | None,
        seq: SequenceRange | None,
        received_ms: int,
    ) -> None:
        super().__init__(future)
        self.readings = readings
        self.address = address
        self.seq = seq
        self.received_ms = received_ms

    def apply(self, db: sqlite3.Connection) -> SubmitResult:
        at = self.received_ms
        cursor = db.executemany(
            _INSERT_READING,
            [(r.board_id, r.name, r.unit, r.kind, r.value, r.time_ms, at) for r in self.readings],
        )
        stored = max(cursor.rowcount, 0)
        boards = {r.board_id for r in self.readings}
        db.executemany(_TOUCH_BOARD, [(b, at, at, self.address) for b in boards])
        if self.seq is not None and len(boards) == 1:
            _count_sequence(db, next(iter(boards)), self.seq)
        return SubmitResult(stored=stored, duplicates=len(self.readings) - stored)


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


class _HealthJob(_Job):
    __slots__ = ("address", "board_id", "health_json", "received_ms")

    def __init__(
        self,
        future: asyncio.Future[Any],
        board_id: str,
        health_json: str,
        address: str | None,
        received_ms: int,
    ) -> None:
        super().__init__(future)
        self.board_id = board_id
        self.health_json = health_json
        self.address = address
        self.received_ms = received_ms

    def apply(self, db: sqlite3.Connection) -> None:
        at = self.received_ms
        db.execute(_TOUCH_BOARD, (self.board_id, at, at, self.address))
        db.execute(
            "UPDATE boards SET last_health = ?, health_ms = ? WHERE board_id = ?",
            (self.health_json, at, self.board_id),
        )


class _ProgressJob(_Job):
    __slots__ = ("delivered_id", "uplink")

    def __init__(self, future: asyncio.Future[Any], uplink: str, delivered_id: int) -> None:
        super().__init__(future)
        self.uplink = uplink
        self.delivered_id = delivered_id

    def apply(self, db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT INTO uplink_progress (uplink, delivered_id) VALUES (?, ?)"
            " ON CONFLICT (uplink) DO UPDATE"
            " SET delivered_id = max(delivered_id, excluded.delivered_id)",
            (self.uplink, self.delivered_id),
        )


_STOP: Final = object()
#: Seconds between WAL checkpoints while commits keep coming.
_CHECKPOINT_INTERVAL_S: Final = 0.5


class Store:
    """The gateway's SQLite store with its single writer thread.

    ``before_commit`` is called in the writer thread right before each COMMIT; tests use it
    to hold a transaction open and prove that nothing is acknowledged before it commits.
    """

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        counters: Counters | None = None,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.counters = counters if counters is not None else Counters()
        self._before_commit = before_commit
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._write_db: sqlite3.Connection | None = None
        self._read_db: sqlite3.Connection | None = None
        self._checkpoint_db: sqlite3.Connection | None = None
        self._checkpointer: threading.Thread | None = None
        self._commits = threading.Event()
        self._stopping = threading.Event()
        self._read_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepting = False
        self._head_id = 0
        self._wakeups: set[asyncio.Event] = set()
        self._outboxes: dict[str, Outbox] = {}

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Open (or create) the database and start the writer thread."""
        self._loop = asyncio.get_running_loop()
        self._write_db = self._connect(self.path)
        try:
            self._write_db.execute("PRAGMA journal_mode = WAL")
            self._write_db.execute(f"PRAGMA synchronous = {self.synchronous}")
            # Checkpoints run in their own thread (see _checkpoint_loop), not inside a COMMIT
            # that boards are waiting on.
            self._write_db.execute("PRAGMA wal_autocheckpoint = 0")
            self._write_db.executescript(_SCHEMA)
            self._write_db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._read_db = self._connect(self.path)
            self._read_db.execute("PRAGMA query_only = 1")
            (head,) = self._read_db.execute("SELECT coalesce(max(id), 0) FROM readings").fetchone()
        except sqlite3.DatabaseError as exc:
            self._close_connections()
            raise StoreCorrupt(
                f"{self.path}: SQLite cannot use this file ({exc}); it was left untouched"
            ) from None
        self._head_id = head
        self._writer = threading.Thread(target=self._write_loop, name="store-writer", daemon=True)
        self._writer.start()
        self._checkpoint_db = self._connect(self.path)
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="store-checkpoint", daemon=True
        )
        self._checkpointer.start()
        self._accepting = True

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 5000")
        except sqlite3.OperationalError as exc:
            raise StateDirError(f"cannot open database {path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise StoreCorrupt(
                f"{path}: SQLite cannot use this file ({exc}); it was left untouched"
            ) from None
        return db

    async def close(self) -> None:
        """Refuse new work, let the writer commit everything queued, then close the file."""
        self._accepting = False
        if self._writer is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._checkpointer is not None:
            self._stopping.set()
            self._commits.set()
            await asyncio.to_thread(self._checkpointer.join)
            self._checkpointer = None
        # Futures resolved by the writer's last call_soon_threadsafe run on the next tick.
        await asyncio.sleep(0)
        self._close_connections()

    def _close_connections(self) -> None:
        for db in (self._write_db, self._read_db, self._checkpoint_db):
            if db is not None:
                db.close()
        self._write_db = self._read_db = self._checkpoint_db = None

    # -- writing -----------------------------------------------------------------------

    async def submit(
        self,
        readings: Sequence[Reading],
        *,
        address: str | None = None,
        seq: SequenceRange | None = None,
        received_ms: int | None = None,
    ) -> SubmitResult:
        """Store readings (duplicates ignored) and touch their boards; returns after COMMIT.

        ``seq`` is only counted when all readings come from one board.
        """
        future = self._new_future()
        at = now_ms() if received_ms is None else received_ms
        self._queue.put(_ReadingsJob(future, readings, address, seq, at))
        result: SubmitResult = await future
        return result

    async def submit_health(
        self, board_id: str, health: Mapping[str, Any], *, address: str | None = None
    ) -> None:
        """Record a board's health report in the registry; returns after COMMIT."""
        future = self._new_future()
        self._queue.put(_HealthJob(future, board_id, json.dumps(health), address, now_ms()))
        await future

    def _new_future(self) -> asyncio.Future[Any]:
        if not self._accepting or self._loop is None:
            raise StoreUnavailable("store is not accepting writes (gateway stopping)")
        return self._loop.create_future()

    def _write_loop(self) -> None:
        db = self._write_db
        assert db is not None
        stopping = False
        while not stopping:
            jobs: list[_Job] = []
            item = self._queue.get()
            while True:
                if item is _STOP:
                    stopping = True
                elif isinstance(item, _Job):
                    jobs.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if jobs:
                self._commit_group(db, jobs)

    def _commit_group(self, db: sqlite3.Connection, jobs: list[_Job]) -> None:
        try:
            outcomes, head = self._transaction(db, jobs)
        except Exception:
            # Something in the group failed. Apply each job in its own transaction, so that
            # one bad job cannot fail the others (rare path; no savepoints on the hot one).
            outcomes, head = [], None
            for job in jobs:
                try:
                    (outcome,), job_head = self._transaction(db, [job])
                except Exception as exc:
                    outcome = StoreUnavailable(f"store could not commit: {exc}")
                    job_head = None
                outcomes.append(outcome)
                head = job_head if job_head is not None else head
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._resolve, jobs, outcomes, head)

    def _transaction(
        self, db: sqlite3.Connection, jobs: list[_Job]
    ) -> tuple[list[object], int | None]:
        """Apply jobs in one transaction and commit; returns their outcomes and the new head."""
        try:
            db.execute("BEGIN IMMEDIATE")
            outcomes: list[object] = [job.apply(db) for job in jobs]
            head: int | None = None
            if any(isinstance(o, SubmitResult) and o.stored for o in outcomes):
                (head,) = db.execute("SELECT max(id) FROM readings").fetchone()
            if self._before_commit is not None:
                self._before_commit()
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
        self._commits.set()
        return outcomes, head

    def _checkpoint_loop(self) -> None:
        """Copy the WAL back into the database now and then, beside the writer.

        PASSIVE never blocks the writer (nor readers); the WAL restarts from its beginning
        once a checkpoint has caught up, which keeps it from growing without bound.
        """
        db = self._checkpoint_db
        assert db is not None
        while not self._stopping.is_set():
            self._commits.wait()
            self._commits.clear()
            with contextlib.suppress(sqlite3.Error):  # busy now: the next round catches up
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self._stopping.wait(_CHECKPOINT_INTERVAL_S)

    def _resolve(self, jobs: list[_Job], outcomes: list[object], head: int | None) -> None:
        counters = self.counters
        for job, outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, SubmitResult):
                counters.readings_stored += outcome.stored
                counters.duplicates += outcome.duplicates
            if job.future.done():
                continue  # the requester gave up (cancelled); the write stands regardless
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
        if head is not None and head > self._head_id:
            self._head_id = head
            for wakeup in self._wakeups:
                wakeup.set()

    # -- reading -----------------------------------------------------------------------

    @property
    def head_id(self) -> int:
        """Outbox position of the newest committed reading."""
        return self._head_id

    def read(self, sql: str, params: Iterable[object] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query on the reader connection (blocking; keep it small)."""
        if self._read_db is None:
            raise StoreUnavailable("store is closed")
        with self._read_lock:
            return self._read_db.execute(sql, tuple(params)).fetchall()

    async def read_async(self, sql: str, params: Iterable[object] = ()) -> list[tuple[Any, ...]]:
        """:meth:`read` in a worker thread, for queries that may take a while."""
        return await asyncio.to_thread(self.read, sql, params)

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

    async def outbox(self, uplink: str) -> Outbox:
        """The outbox as the uplink called ``uplink`` sees it, resuming at its saved cursor."""
        existing = self._outboxes.get(uplink)
        if existing is not None:
            return existing
        rows = await self.read_async(
            "SELECT delivered_id FROM uplink_progress WHERE uplink = ?", (uplink,)
        )
        box = Outbox(self, uplink, rows[0][0] if rows else 0)
        self._outboxes[uplink] = box
        return box

    @property
    def outboxes(self) -> Mapping[str, Outbox]:
        """Outboxes opened so far, by uplink name."""
        return self._outboxes

    def _fetch_rows(self, after_id: int, limit: int) -> list[OutboxRow]:
        rows = self.read(
            "SELECT id, board_id, name, unit, kind, value, time_ms, received_ms FROM readings"
            " WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        make = OutboxRow._make
        return [make(row) for row in rows]

    async def _save_progress(self, uplink: str, delivered_id: int) -> None:
        future = self._new_future()
        self._queue.put(_ProgressJob(future, uplink, delivered_id))
        await future


class Outbox:
    """One uplink's view of the readings table: rows after its cursor, oldest first.

    At-least-once: an uplink fetches, delivers, then marks delivered; after a crash between
    the last two it sees the same rows again.
    """

    def __init__(self, store: Store, uplink: str, delivered_id: int) -> None:
        self.store = store
        self.uplink = uplink
        self._delivered_id = delivered_id
        self._wakeup = asyncio.Event()
        store._wakeups.add(self._wakeup)

    @property
    def delivered_id(self) -> int:
        """Outbox position of the last reading this uplink delivered."""
        return self._delivered_id

    @property
    def backlog(self) -> int:
        """Readings committed but not yet delivered by this uplink (ids are dense)."""
        return max(self.store.head_id - self._delivered_id, 0)

    async def fetch(self, limit: int) -> list[OutboxRow]:
        """Up to ``limit`` undelivered rows, in outbox order."""
        return await asyncio.to_thread(self.store._fetch_rows, self._delivered_id, limit)

    async def mark_delivered(self, up_to_id: int) -> None:
        """Record (durably) that every row up to ``up_to_id`` has been delivered."""
        await self.store._save_progress(self.uplink, up_to_id)
        self._delivered_id = max(self._delivered_id, up_to_id)

    async def wait_for_rows(self) -> None:
        """Return once rows after the cursor are committed (at once if there already are)."""
        while self.store.head_id <= self._delivered_id:
            self._wakeup.clear()
            await self._wakeup.wait()
