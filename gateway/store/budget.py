"""The outbox's disk budget: prune what every consumer has, and apply the policy when full.

What the store uses is measured as SQLite sees it: pages in use (``page_count`` less
``freelist_count``) times the page size. Deleted rows free pages that new rows reuse, so the
file stops growing once pruning keeps up; it never shrinks by itself.

:class:`OutboxKeeper` runs in a process of its own and, every ``interval``:

1. **prunes** readings every reader of the outbox has passed (the batcher, the JSON file
   uplink; whichever are enabled) once they are ``keep_delivered_ms`` old (until then the
   store's uniqueness recognises a board's late retransmission of them), and batches every
   enabled batch uplink has delivered;
2. if the store uses more than ``max_bytes`` and the policy is ``drop_oldest``, **drops** the
   oldest undelivered data, whole batches first (a consumer sees the gap in the chain), else
   readings not yet read, until it is back under budget. Each drop is counted, in the same
   transaction, in ``outbox_counters`` (``dropped_readings``, ``dropped_batches``; readings
   already in batches that only the JSON Lines uplink lacked, ``dropped_file_readings``).

The ``refuse`` policy needs nothing here: the CoAP server checks :func:`used_bytes` itself
and answers new readings with 5.03 and Max-Age while the store is over budget
(:class:`gateway.errors.OutboxFull`), counting each refusal.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from gateway.processes import sleep_unless
from gateway.store.schema import add_counter, connect, now_ms, transaction

log = logging.getLogger(__name__)

Policy = Literal["refuse", "drop_oldest"]
POLICIES: Final = ("refuse", "drop_oldest")
#: Most rows one pruning or dropping transaction deletes, so the writer never waits long.
_CHUNK: Final = 20_000


def used_bytes(db: sqlite3.Connection) -> int:
    """Bytes of the database in use (pages holding data), as this connection sees it."""
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    (free,) = db.execute("PRAGMA freelist_count").fetchone()
    (size,) = db.execute("PRAGMA page_size").fetchone()
    return (int(pages) - int(free)) * int(size)


@dataclass(frozen=True)
class Consumers:
    """Who reads the outbox, hence what may be pruned."""

    #: Whether the batcher runs (readings are then kept until they are in a batch).
    batching: bool
    #: Readings uplinks (names in ``uplink_progress``) that are enabled.
    readings_uplinks: Sequence[str]
    #: Batch uplinks (names in ``batch_progress``) that are enabled.
    batch_uplinks: Sequence[str]


class OutboxKeeper:
    """Prunes delivered data and enforces the budget on one database."""

    def __init__(
        self,
        path: Path,
        consumers: Consumers,
        *,
        max_bytes: int = 0,
        policy: str = "refuse",
        keep_delivered_ms: int = 0,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        self.consumers = consumers
        self.max_bytes = max_bytes
        self.policy = policy
        #: Delivered readings younger than this stay, so a late retransmission is known.
        self.keep_delivered_ms = keep_delivered_ms
        self.clock_ms = clock_ms
        self._db = connect(path)
        self._db.execute("PRAGMA journal_mode = WAL")

    def close(self) -> None:
        self._db.close()

    @property
    def used_bytes(self) -> int:
        return used_bytes(self._db)

    def readings_passed(self) -> int | None:
        """The highest outbox id every reader has passed; None when nobody reads readings."""
        marks: list[int] = []
        db = self._db
        if self.consumers.batching:
            row = db.execute("SELECT batched_id FROM batch_chain WHERE id = 1").fetchone()
            marks.append(int(row[0]) if row else 0)
        for name in self.consumers.readings_uplinks:
            row = db.execute(
                "SELECT delivered_id FROM uplink_progress WHERE uplink = ?", (name,)
            ).fetchone()
            marks.append(int(row[0]) if row else 0)
        return min(marks) if marks else None

    def batches_delivered(self) -> int | None:
        """The highest seq every enabled batch uplink has delivered; None when there is none."""
        marks = []
        for name in self.consumers.batch_uplinks:
            row = self._db.execute(
                "SELECT delivered_seq FROM batch_progress WHERE uplink = ?", (name,)
            ).fetchone()
            marks.append(int(row[0]) if row else 0)
        return min(marks) if marks else None

    def prune(self, *, keep: bool = True) -> tuple[int, int]:
        """Delete what every consumer has; returns (readings, batches) deleted.

        Delivered readings younger than ``keep_delivered_ms`` stay, unless ``keep`` is
        false (over budget: room for new readings comes before recognising old repeats).
        """
        readings = batches = 0
        passed = self.readings_passed()
        if passed is not None:
            kept_since = self.clock_ms() - (self.keep_delivered_ms if keep else 0)
            readings = self._delete_chunks(
                "DELETE FROM readings WHERE id IN (SELECT id FROM readings"
                f" WHERE id <= ? AND received_ms <= {int(kept_since)}"
                " ORDER BY id LIMIT ?)",
                passed,
                "pruned_readings",
            )
        delivered = self.batches_delivered()
        if delivered is not None:
            batches = self._delete_chunks(
                "DELETE FROM batches WHERE seq IN"
                " (SELECT seq FROM batches WHERE seq <= ? ORDER BY seq LIMIT ?)",
                delivered,
                "pruned_batches",
            )
        return readings, batches

    def _delete_chunks(self, sql: str, up_to: int, counter: str) -> int:
        total = 0
        while True:
            with transaction(self._db) as db:
                deleted = max(db.execute(sql, (up_to, _CHUNK)).rowcount, 0)
                add_counter(db, counter, deleted)
            total += deleted
            if deleted < _CHUNK:
                return total

    def enforce(self) -> tuple[int, int]:
        """Under ``drop_oldest``, drop the oldest data until under budget.

        Returns (readings, batches) dropped; (0, 0) under ``refuse`` or when within budget.
        """
        if self.policy != "drop_oldest" or self.max_bytes <= 0:
            return 0, 0
        readings = batches = 0
        while self.used_bytes > self.max_bytes:
            dropped = self._drop_oldest_batches() if self.consumers.batch_uplinks else (0, 0)
            if dropped == (0, 0):
                lost, deleted = self._drop_oldest_readings()
                if not deleted:
                    log.warning("outbox over budget with nothing left to drop")
                    break
                dropped = (lost, 0)
            readings += dropped[0]
            batches += dropped[1]
        if readings or batches:
            log.warning("outbox over budget: dropped %d readings (%d batches)", readings, batches)
        return readings, batches

    def _drop_oldest_batches(self, count: int = 8) -> tuple[int, int]:
        with transaction(self._db) as db:
            rows = db.execute(
                "SELECT seq, readings FROM batches ORDER BY seq LIMIT ?", (count,)
            ).fetchall()
            if not rows:
                return 0, 0
            db.execute("DELETE FROM batches WHERE seq <= ?", (rows[-1][0],))
            readings = sum(int(r[1]) for r in rows)
            add_counter(db, "dropped_batches", len(rows))
            add_counter(db, "dropped_readings", readings)
        return readings, len(rows)

    def _drop_oldest_readings(self, count: int = 5000) -> tuple[int, int]:
        """Delete the oldest readings; return (dropped, deleted).

        Only readings some reader still lacked count as dropped.
        A reading every reader has passed (the batcher included: it is in a batch, waiting
        or already counted when that batch was dropped) is pruned, not lost.
        """
        with transaction(self._db) as db:
            # Read in the same transaction as the delete: a batch committed in between
            # would otherwise have its readings counted lost here and again when it drops.
            passed = self.readings_passed()
            last = db.execute(
                "SELECT max(id) FROM (SELECT id FROM readings ORDER BY id LIMIT ?)", (count,)
            ).fetchone()[0]
            if self.consumers.batching:
                # Never under the batcher's feet: it may hold rows it has read but not yet
                # committed into a batch. Space comes from dropping whole batches instead.
                row = db.execute("SELECT batched_id FROM batch_chain WHERE id = 1").fetchone()
                batched = int(row[0]) if row else 0
                last = min(last, batched) if last is not None else None
            if not last:
                return 0, 0
            (lost,) = db.execute(
                "SELECT count(*) FROM readings WHERE id > ? AND id <= ?",
                (passed if passed is not None else -1, last),
            ).fetchone()
            deleted = max(db.execute("DELETE FROM readings WHERE id <= ?", (last,)).rowcount, 0)
            # With the batcher on, these readings are all in batches: lost only to the
            # readings uplinks (the JSON Lines file). Counted apart, so that a reading is in
            # dropped_readings once, when the batch holding it is dropped.
            lost_to = "dropped_file_readings" if self.consumers.batching else "dropped_readings"
            add_counter(db, lost_to, int(lost))
            add_counter(db, "pruned_readings", deleted - int(lost))
        return int(lost), deleted

    def run(self, stop: Callable[[], bool], interval_s: float = 1.0) -> None:
        """Prune and enforce every ``interval_s`` until ``stop()``; errors are logged, retried."""
        while not stop():
            try:
                self.prune()
                if self.max_bytes > 0 and self.used_bytes > self.max_bytes:
                    self.prune(keep=False)
                self.enforce()
            except sqlite3.Error as exc:
                log.warning("outbox keeper: %s", exc)
            sleep_unless(stop, interval_s)


__all__ = ["POLICIES", "Consumers", "OutboxKeeper", "Policy", "used_bytes"]
