"""Writing readings and health: group commit, in the writer process only.

:class:`StoreWriter` applies groups of jobs in *one* transaction each (group commit). It
runs in the writer process (:mod:`gateway.intake.writer`), the only place readings and the
board registry are written; an acknowledgement is sent only after its group commits.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.codec.senml import Reading
from gateway.errors import BadPayload, StoreUnavailable
from gateway.ota.report import ota_report
from gateway.store.releases import record_board_ota
from gateway.store.schema import connect

_INSERT_READING = (
    "INSERT OR IGNORE INTO readings (board_id, name, unit, kind, value, time_ms, received_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_TOUCH_BOARD = (
    "INSERT INTO boards (board_id, first_seen_ms, last_seen_ms, address) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (board_id) DO UPDATE SET last_seen_ms = max(last_seen_ms, excluded.last_seen_ms),"
    " address = coalesce(excluded.address, address)"
)


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
        max_seq_jump: int = 1_000_000,
    ) -> None:
        self.path = path
        #: The largest believable forward jump of a board's record sequence numbers.
        self.max_seq_jump = max_seq_jump
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
                    result = _store_readings(db, job, self.max_seq_jump)
                    outcomes.append(result)
                    if result.stored == 0:
                        # Only repeats: a retransmission, or someone replaying a board's
                        # datagram. Neither says where the board is or that it is alive.
                        continue
                    for board_id in {r.board_id for r in job.readings}:
                        seen[board_id] = (at, address or seen.get(board_id, (0, None))[1])
                else:
                    db.execute(_TOUCH_BOARD, (job.board_id, at, at, address))
                    db.execute(
                        "UPDATE boards SET last_health = ?, health_ms = ? WHERE board_id = ?",
                        (job.health_json, at, job.board_id),
                    )
                    _record_ota(db, job, at)
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


def _record_ota(db: sqlite3.Connection, job: HealthJob, at_ms: int) -> None:
    """The board's OTA state, when its health report (checked in the CoAP process) says one."""
    if '"ota"' not in job.health_json:  # most reports: no JSON decoding for them
        return
    try:
        health = json.loads(job.health_json)
        report = ota_report(health) if isinstance(health, dict) else None
    except (ValueError, BadPayload):  # never lose the health report over its ota field
        return
    if report is not None:
        record_board_ota(db, job.board_id, report.seq, report.state, report.detail, at_ms)


def _store_readings(db: sqlite3.Connection, job: ReadingsJob, max_jump: int) -> SubmitResult:
    at = job.received_ms
    cursor = db.executemany(
        _INSERT_READING,
        [(r.board_id, r.name, r.unit, r.kind, r.value, r.time_ms, at) for r in job.readings],
    )
    stored = max(cursor.rowcount, 0)
    if job.seq is not None and stored:
        boards = {r.board_id for r in job.readings}
        if len(boards) == 1:
            board_id = next(iter(boards))
            db.execute(_TOUCH_BOARD, (board_id, at, at, job.address))
            _count_sequence(db, board_id, job.seq, max_jump)
    return SubmitResult(stored=stored, duplicates=len(job.readings) - stored)


def _count_sequence(
    db: sqlite3.Connection, board_id: str, seq: SequenceRange, max_jump: int
) -> None:
    """Advance the board's sequence mark; a jump forward counts the skipped records as missed.

    Retransmissions and replays (``first`` at or below the mark) change nothing. A jump of
    more than ``max_jump`` records is not believed (no board buffers that many, and one
    forged request would otherwise hide every real gap after it): it counts as an anomaly
    and moves nothing.
    """
    last_seq, missed = db.execute(
        "SELECT last_seq, missed FROM boards WHERE board_id = ?", (board_id,)
    ).fetchone()
    last = seq.first + seq.count - 1
    if last_seq is not None and seq.first > last_seq + 1 + max_jump:
        db.execute("UPDATE boards SET anomalies = anomalies + 1 WHERE board_id = ?", (board_id,))
        return
    if last_seq is not None and seq.first > last_seq + 1:
        missed += seq.first - last_seq - 1
    if last_seq is None or last > last_seq:
        db.execute(
            "UPDATE boards SET last_seq = ?, missed = ? WHERE board_id = ?",
            (last, missed, board_id),
        )
