"""The readings outbox as one reader sees it: rows after its cursor, oldest first.

The ``readings`` table doubles as the outbox: its ``id`` (AUTOINCREMENT, so it never goes
back even after old rows are pruned) is the position. Each readings uplink keeps its own
cursor in ``uplink_progress`` (:class:`Outbox`); the batcher keeps its cursor in the chain
state (:mod:`gateway.store.batch_log`) and reads the same rows with :func:`fetch_rows`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final, NamedTuple

from gateway.codec.senml import Value, ValueKind
from gateway.store.schema import connect

_HEAD_ID: Final = "SELECT coalesce(max(id), 0) FROM readings"
_POLL_S: Final = 0.02
_FETCH_ROWS: Final = (
    "SELECT id, board_id, name, unit, kind, value, time_ms, received_ms FROM readings"
    " WHERE id > ? ORDER BY id LIMIT ?"
)


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

    @property
    def position(self) -> int:
        """Its place in the outbox (what a cursor counts)."""
        return self.id


def head_id(db: sqlite3.Connection) -> int:
    """Outbox position of the newest committed reading."""
    (head,) = db.execute(_HEAD_ID).fetchone()
    return int(head)


def fetch_rows(db: sqlite3.Connection, after_id: int, limit: int) -> list[OutboxRow]:
    """Up to ``limit`` stored readings after outbox position ``after_id``, in outbox order."""
    make = OutboxRow._make
    return [make(row) for row in db.execute(_FETCH_ROWS, (after_id, limit)).fetchall()]


def received_ms_after(db: sqlite3.Connection, after_id: int) -> int | None:
    """When the oldest reading after ``after_id`` was received; None if there is none."""
    row = db.execute(
        "SELECT received_ms FROM readings WHERE id > ? ORDER BY id LIMIT 1", (after_id,)
    ).fetchone()
    return None if row is None else int(row[0])


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
        return head_id(self._db)

    @property
    def backlog(self) -> int:
        """Readings committed but not yet delivered by this uplink (ids are dense)."""
        return max(self.head_id() - self._delivered_id, 0)

    def fetch(self, limit: int) -> list[OutboxRow]:
        """Up to ``limit`` undelivered rows, in outbox order."""
        return fetch_rows(self._db, self._delivered_id, limit)

    def mark_delivered(self, up_to_id: int, note: int | None = None) -> None:
        """Record (durably, in a short transaction) that rows up to ``up_to_id`` are delivered."""
        self._db.execute(
            "INSERT INTO uplink_progress (uplink, delivered_id) VALUES (?, ?)"
            " ON CONFLICT (uplink) DO UPDATE"
            " SET delivered_id = max(delivered_id, excluded.delivered_id)",
            (self.uplink, up_to_id),
        )
        self._delivered_id = max(self._delivered_id, up_to_id)

    # -- as a gateway.uplinks.delivery.Source -------------------------------------------

    def delivered(self) -> int:
        return self._delivered_id

    def fetch_after(self, position: int, limit: int) -> list[OutboxRow]:
        return fetch_rows(self._db, position, limit)

    def wait_after(self, position: int, timeout_s: float, stop: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.head_id() <= position:
            if stop() or time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)
        return True

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
