"""The control channel's tables: every SQL statement on them lives here
(``gateway.control`` has the logic).

* ``control_desired``: the desired document applied last, kept as its envelope so that a
  restarted gateway (or one with no broker) verifies and acts on it again;
* ``control_revocations``: the newest root-signed revocation list any envelope carried;
* ``control_nonces``: the ids of commands already taken, until those commands expire (a
  command is refused after its expiry anyway, so older nonces are pruned: bounded by what
  operators sign within ``max_command_ttl_s``);
* ``control_counters``: refusals by reason (``refused.<reason>``), the seq of the last
  state and events messages, events dropped from a full queue;
* ``board_commands``: commands waiting for a board (a reboot at its next contact), with the
  boot count it had, so the command is done once its health shows a higher one;
* ``control_events``: events not yet published, at most ``max_events`` (the oldest go
  first, counted in ``events_dropped``);
* ``control_rollout``: how far this gateway took the rollout of its document
  (``gateway.control.reconciler.Progress`` as JSON);
* ``control_marks``: what each board's last health and OTA state said when events were
  last derived, so a restart does not announce every board again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import cbor2

from gateway.store.schema import connect, transaction

#: Events kept for publishing at most; beyond it the oldest are dropped and counted.
MAX_EVENTS: Final = 10_000
REFUSED_PREFIX: Final = "refused."
EVENTS_DROPPED: Final = "events_dropped"


@dataclass(frozen=True, slots=True)
class StoredDesired:
    """The applied desired document: its seq, its envelope's bytes, when it was applied."""

    seq: int
    encoded: bytes
    applied_ms: int


@dataclass(frozen=True, slots=True)
class BoardCommand:
    """A command waiting for its board's next contact."""

    id: bytes
    board_id: str
    action: str
    boot_count: int
    #: Unix seconds; after it the command has failed.
    expires: int


@dataclass(frozen=True, slots=True)
class Event:
    """One event for the ``events`` topic (``detail`` a map of CBOR scalars)."""

    at_ms: int
    kind: str
    board: str | None
    detail: dict[str, Any]

    def to_map(self) -> dict[str, Any]:
        return {"at": self.at_ms, "kind": self.kind, "board": self.board, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class BoardMark:
    """What a board's health and OTA state said when events were last derived."""

    boot_count: int | None
    ota_state: str | None
    ota_detail: str | None


class ControlStore:
    """The control tables of ``gateway.db`` on a connection of its own."""

    def __init__(self, path: Path, *, read_only: bool = False, max_events: int = MAX_EVENTS):
        self._db: sqlite3.Connection = connect(path, read_only=read_only)
        self._max_events = max_events

    def close(self) -> None:
        self._db.close()

    # -- the desired document and revocations -----------------------------------------

    def desired(self) -> StoredDesired | None:
        row = self._db.execute(
            "SELECT seq, encoded, applied_ms FROM control_desired WHERE id = 1"
        ).fetchone()
        return None if row is None else StoredDesired(int(row[0]), bytes(row[1]), int(row[2]))

    def save_desired(self, seq: int, encoded: bytes, applied_ms: int) -> None:
        with transaction(self._db):
            self._db.execute(
                "INSERT INTO control_desired (id, seq, encoded, applied_ms) VALUES (1, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq,"
                " encoded = excluded.encoded, applied_ms = excluded.applied_ms",
                (seq, encoded, applied_ms),
            )

    def revocations(self) -> tuple[int, bytes | None]:
        """(seq, the list) of the newest revocation list seen; (0, None) when none yet."""
        row = self._db.execute(
            "SELECT seq, encoded FROM control_revocations WHERE id = 1"
        ).fetchone()
        return (0, None) if row is None else (int(row[0]), bytes(row[1]))

    def save_revocations(self, seq: int, encoded: bytes) -> None:
        """Keep the list if it is newer than the one kept."""
        with transaction(self._db):
            self._db.execute(
                "INSERT INTO control_revocations (id, seq, encoded) VALUES (1, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, encoded = excluded.encoded"
                " WHERE excluded.seq > control_revocations.seq",
                (seq, encoded),
            )

    # -- command nonces -------------------------------------------------------------------

    def take_nonce(self, nonce: bytes, expires: int, now: int) -> bool:
        """Remember a command's nonce until ``expires``; False if it was seen before.

        Nonces of commands expired before ``now`` are pruned in the same transaction."""
        with transaction(self._db):
            self._db.execute("DELETE FROM control_nonces WHERE expires < ?", (now,))
            cursor = self._db.execute(
                "INSERT INTO control_nonces (nonce, expires) VALUES (?, ?)"
                " ON CONFLICT (nonce) DO NOTHING",
                (nonce, expires),
            )
            return cursor.rowcount == 1

    def nonces(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM control_nonces").fetchone()[0])

    # -- counters -------------------------------------------------------------------------

    def count_refusal(self, reason: str) -> None:
        with transaction(self._db):
            self._add(REFUSED_PREFIX + reason, 1)

    def refusals(self) -> dict[str, int]:
        """Refusals so far by reason."""
        rows = self._db.execute(
            "SELECT name, value FROM control_counters WHERE name LIKE 'refused.%'"
        ).fetchall()
        return {str(name)[len(REFUSED_PREFIX) :]: int(value) for name, value in rows}

    def counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM control_counters WHERE name = ?", (name,))
        found = row.fetchone()
        return 0 if found is None else int(found[0])

    def next_seq(self, name: str) -> int:
        """Add one to counter ``name`` (``state_seq``, ``events_seq``) and return it."""
        with transaction(self._db):
            self._add(name, 1)
            return self.counter(name)

    def _add(self, name: str, amount: int) -> None:
        self._db.execute(
            "INSERT INTO control_counters (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, amount),
        )

    # -- commands waiting for a board ----------------------------------------------------

    def add_board_command(self, command: BoardCommand) -> None:
        with transaction(self._db):
            self._db.execute(
                "INSERT INTO board_commands (id, board_id, action, boot_count, expires)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (
                    command.id,
                    command.board_id,
                    command.action,
                    command.boot_count,
                    command.expires,
                ),
            )

    def board_commands(self) -> list[BoardCommand]:
        rows = self._db.execute(
            "SELECT id, board_id, action, boot_count, expires FROM board_commands ORDER BY rowid"
        ).fetchall()
        return [BoardCommand(bytes(i), str(b), str(a), int(c), int(e)) for i, b, a, c, e in rows]

    def finish_board_command(self, command_id: bytes) -> None:
        with transaction(self._db):
            self._db.execute("DELETE FROM board_commands WHERE id = ?", (command_id,))

    def pending_reboots(self) -> dict[str, int]:
        """Boards with a reboot waiting: board id -> the boot count it had when asked (the
        board is told to reboot until its health shows a higher one)."""
        rows = self._db.execute(
            "SELECT board_id, max(boot_count) FROM board_commands WHERE action = 'reboot'"
            " GROUP BY board_id"
        ).fetchall()
        return {str(board): int(count) for board, count in rows}

    def data_version(self) -> int:
        """Changes when another connection has committed (SQLite ``PRAGMA data_version``)."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    # -- events ---------------------------------------------------------------------------

    def queue_events(self, events: Iterable[Event]) -> None:
        """Add events to the queue, dropping (and counting) the oldest beyond its bound."""
        with transaction(self._db):
            self._queue(events)

    def _queue(self, events: Iterable[Event]) -> None:
        rows = [
            (e.at_ms, e.kind, e.board, bytes(cbor2.dumps(e.detail, canonical=True))) for e in events
        ]
        if rows:
            self._db.executemany(
                "INSERT INTO control_events (at_ms, kind, board, detail) VALUES (?, ?, ?, ?)",
                rows,
            )
        (count,) = self._db.execute("SELECT count(*) FROM control_events").fetchone()
        excess = int(count) - self._max_events
        if excess > 0:
            self._db.execute(
                "DELETE FROM control_events WHERE id IN"
                " (SELECT id FROM control_events ORDER BY id LIMIT ?)",
                (excess,),
            )
            self._add(EVENTS_DROPPED, excess)

    def events(self, limit: int) -> list[tuple[int, Event]]:
        """The oldest ``limit`` queued events with their queue ids."""
        rows = self._db.execute(
            "SELECT id, at_ms, kind, board, detail FROM control_events ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            (int(i), Event(int(at), str(kind), None if b is None else str(b), _detail(d)))
            for i, at, kind, b, d in rows
        ]

    def published_events(self, through_id: int) -> None:
        """Events up to ``through_id`` reached the broker: forget them."""
        with transaction(self._db):
            self._db.execute("DELETE FROM control_events WHERE id <= ?", (through_id,))

    def queued_events(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM control_events").fetchone()[0])

    # -- marks ----------------------------------------------------------------------------

    def rollout_progress(self) -> str | None:
        """How far this gateway took the rollout, as JSON (None: no rollout yet)."""
        row = self._db.execute("SELECT progress FROM control_rollout WHERE id = 1").fetchone()
        return None if row is None else str(row[0])

    def save_rollout_progress(self, progress: str, events: Iterable[Event]) -> None:
        """The rollout's new progress and the events of the change, in one transaction."""
        with transaction(self._db):
            self._db.execute(
                "INSERT INTO control_rollout (id, progress) VALUES (1, ?)"
                " ON CONFLICT (id) DO UPDATE SET progress = excluded.progress",
                (progress,),
            )
            self._queue(events)

    def marks(self) -> dict[str, BoardMark]:
        rows = self._db.execute(
            "SELECT board_id, boot_count, ota_state, ota_detail FROM control_marks"
        ).fetchall()
        return {
            str(b): BoardMark(
                None if c is None else int(c),
                None if s is None else str(s),
                None if d is None else str(d),
            )
            for b, c, s, d in rows
        }

    def save_marks(self, marks: Mapping[str, BoardMark], events: Iterable[Event]) -> None:
        """New marks and the events derived from the change, in one transaction."""
        with transaction(self._db):
            self._db.executemany(
                "INSERT INTO control_marks (board_id, boot_count, ota_state, ota_detail)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (board_id) DO UPDATE SET"
                " boot_count = excluded.boot_count, ota_state = excluded.ota_state,"
                " ota_detail = excluded.ota_detail",
                [(b, m.boot_count, m.ota_state, m.ota_detail) for b, m in marks.items()],
            )
            self._queue(events)


def _detail(data: Any) -> dict[str, Any]:
    try:
        value = cbor2.loads(bytes(data))
    except (cbor2.CBORDecodeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


__all__ = [
    "EVENTS_DROPPED",
    "MAX_EVENTS",
    "BoardCommand",
    "BoardMark",
    "ControlStore",
    "Event",
    "StoredDesired",
]
