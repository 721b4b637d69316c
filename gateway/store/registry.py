"""Read-only questions about the store: the board registry and the gateway's statistics.

The CoAP process opens a :class:`StoreReader` on a connection of its own; it never writes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.batches.format import ChainState
from gateway.errors import StoreUnavailable
from gateway.store.budget import used_bytes
from gateway.store.outbox import head_id
from gateway.store.schema import connect, read_counters


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
    #: Requests whose sequence numbers were implausible and not believed.
    anomalies: int = 0


@dataclass(frozen=True, slots=True)
class StorePositions:
    """Where the outbox, the chain and every cursor stand, for the gateway's statistics."""

    #: The newest outbox position ever used (pruning may have deleted every row behind it).
    head_id: int
    #: Readings uplinks' cursors by name.
    delivered_ids: dict[str, int]
    #: The newest batch's seq, and the batcher's cursor (last outbox id in a batch).
    newest_seq: int
    batched_id: int
    #: Batch uplinks' cursors (last seq delivered) by name.
    delivered_seqs: dict[str, int]
    #: Persistent outbox counters (pruned, dropped, invalid) by name.
    counters: dict[str, int]
    #: Bytes of the database holding data (what the disk budget measures).
    used_bytes: int


class StoreReader:
    """Read-only queries for the CoAP process, operators and tests, on a connection of its own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = connect(path, read_only=True)
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._db is None:
                raise StoreUnavailable("store is closed")
            return self._db.execute(sql, tuple(params)).fetchall()

    @property
    def head_id(self) -> int:
        """Outbox position of the newest committed reading."""
        with self._lock:
            if self._db is None:
                raise StoreUnavailable("store is closed")
            return head_id(self._db)

    def delivered_ids(self) -> dict[str, int]:
        """Each readings uplink's saved cursor, by uplink name."""
        return dict(self._read("SELECT uplink, delivered_id FROM uplink_progress"))

    def used_bytes(self) -> int:
        """Bytes of the database holding data, as the disk budget counts them."""
        with self._lock:
            if self._db is None:
                raise StoreUnavailable("store is closed")
            return used_bytes(self._db)

    def positions(self) -> StorePositions:
        """Every position and counter at once, for :meth:`gateway.daemon.Gateway.stats`."""
        ((head,),) = self._read(
            "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'readings'"
        )
        chain = self._read("SELECT state, batched_id FROM batch_chain WHERE id = 1")
        with self._lock:
            if self._db is None:
                raise StoreUnavailable("store is closed")
            counters = read_counters(self._db)
            used = used_bytes(self._db)
        return StorePositions(
            head_id=int(head),
            delivered_ids=self.delivered_ids(),
            newest_seq=ChainState.decode(chain[0][0]).seq if chain else 0,
            batched_id=int(chain[0][1]) if chain else 0,
            delivered_seqs=dict(self._read("SELECT uplink, delivered_seq FROM batch_progress")),
            counters=counters,
            used_bytes=used,
        )

    def board(self, board_id: str) -> BoardRecord | None:
        """The registry entry of one board, or None if never heard from."""
        rows = self._read(
            "SELECT board_id, first_seen_ms, last_seen_ms, address, last_seq, missed,"
            " last_health, health_ms, anomalies FROM boards WHERE board_id = ?",
            (board_id,),
        )
        if not rows:
            return None
        row = rows[0]
        health = json.loads(row[6]) if row[6] is not None else None
        return BoardRecord(row[0], row[1], row[2], row[3], row[4], row[5], health, row[7], row[8])

    def boards(self) -> list[BoardRecord]:
        """Every board of the registry, by id."""
        rows = self._read(
            "SELECT board_id, first_seen_ms, last_seen_ms, address, last_seq, missed,"
            " last_health, health_ms, anomalies FROM boards ORDER BY board_id"
        )
        return [
            BoardRecord(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                None if r[6] is None else json.loads(r[6]),
                r[7],
                r[8],
            )
            for r in rows
        ]

    def boards_health(self) -> list[tuple[str, str | None, dict[str, Any] | None]]:
        """(board id, last address, last health report) of every board in the registry."""
        rows = self._read("SELECT board_id, address, last_health FROM boards")
        return [
            (str(b), None if a is None else str(a), None if h is None else json.loads(h))
            for b, a, h in rows
        ]

    def board_counts(self, online_since_ms: int) -> tuple[int, int]:
        """(boards ever seen, boards seen at or after ``online_since_ms``)."""
        ((seen, online),) = self._read(
            "SELECT count(*), count(*) FILTER (WHERE last_seen_ms >= ?) FROM boards",
            (online_since_ms,),
        )
        return int(seen), int(online)
