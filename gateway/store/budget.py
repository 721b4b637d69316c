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

How old a reading is, for pruning, is measured on the monotonic clock from when the keeper
saw it arrive (a wall clock set back by hours would hold every reading that long; set
forward, it would forget repeats at once). Readings stored before the keeper started have
no such mark, so for those the receive time they were stored with decides.

:func:`disk_state` is the one verdict on space that health reports and the status LED use:
``ok``, ``nearly_full`` or ``full``, from the outbox's budget and the filesystem's free space.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from gateway.processes import sleep_unless
from gateway.store.schema import add_counter, connect, now_ms, transaction

log = logging.getLogger(__name__)

Policy = Literal["refuse", "drop_oldest"]
POLICIES: Final = ("refuse", "drop_oldest")
#: Most rows one pruning or dropping transaction deletes, so the writer never waits long.
_CHUNK: Final = 20_000
DiskVerdict = Literal["ok", "nearly_full", "full"]
#: Share of the budget (or of the filesystem) in use from which the disk is nearly full.
NEARLY_FULL_RATIO: Final = 0.9
#: Free bytes on the state directory's filesystem below which the disk is full: SQLite
#: needs room for its WAL and a checkpoint, and the OS for its logs.
FS_RESERVE_BYTES: Final = 64 << 20


def filesystem_usage(path: Path) -> tuple[int, int] | None:
    """(free, total) bytes of the filesystem holding ``path`` (as an unprivileged user
    sees it: root's reserved blocks are not free); None if it cannot be read."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def disk_state(
    used: int,
    max_bytes: int,
    *,
    policy: str,
    filesystem: tuple[int, int] | None,
) -> dict[str, Any]:
    """The gateway's one verdict on space, and what it rests on (pure).

    ``full``: the outbox is over its budget (new readings refused, or the oldest dropped,
    by ``policy``) or the filesystem has less than :data:`FS_RESERVE_BYTES` free (commits
    are about to fail: boards are answered 5.03 and keep their readings). ``nearly_full``:
    either is past :data:`NEARLY_FULL_RATIO`. Else ``ok``.
    """
    free, total = filesystem if filesystem is not None else (None, None)
    state: DiskVerdict = "ok"
    if (max_bytes > 0 and used > max_bytes) or (free is not None and free < FS_RESERVE_BYTES):
        state = "full"
    elif (max_bytes > 0 and used > max_bytes * NEARLY_FULL_RATIO) or (
        free is not None and total and total - free > total * NEARLY_FULL_RATIO
    ):
        state = "nearly_full"
    return {
        "state": state,
        "outbox_bytes": used,
        "outbox_max_bytes": max_bytes,
        "policy": policy,
        "fs_free_bytes": free,
        "fs_total_bytes": total,
    }


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
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        self.consumers = consumers
        self.max_bytes = max_bytes
        self.policy = policy
        #: Delivered readings younger than this stay, so a late retransmission is known.
        self.keep_delivered_ms = keep_delivered_ms
        self.clock_ms = clock_ms
        self.monotonic = monotonic
        self._db = connect(path)
        self._db.execute("PRAGMA journal_mode = WAL")
        #: (monotonic s, outbox head id) as seen now and then, oldest first.
        self._arrivals: deque[tuple[float, int]] = deque()
        #: The head when this keeper started: readings up to it have no monotonic mark.
        self._started_head = self._head()
        self._started = monotonic()

    def _head(self) -> int:
        row = self._db.execute("SELECT max(id) FROM readings").fetchone()
        head = int(row[0]) if row and row[0] is not None else 0
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'readings'")
        seq = row.fetchone()
        return max(head, int(seq[0]) if seq else 0)

    def note_arrivals(self) -> None:
        """Remember how far the outbox's ids reached at this moment (monotonic)."""
        head = self._head()
        if not self._arrivals or head > self._arrivals[-1][1]:
            self._arrivals.append((self.monotonic(), head))

    def aged_id(self) -> int:
        """The highest id known, by the monotonic clock, to be ``keep_delivered_ms`` old."""
        cutoff = self.monotonic() - self.keep_delivered_ms / 1000
        aged = self._started_head if self._started <= cutoff else 0
        arrivals = self._arrivals
        while len(arrivals) > 1 and arrivals[1][0] <= cutoff:
            arrivals.popleft()  # the next mark is old enough too: this one says no more
        if arrivals and arrivals[0][0] <= cutoff:
            aged = max(aged, arrivals[0][1])
        return aged

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
            where, up_to = "id <= ?", passed
            if keep and self.keep_delivered_ms > 0:
                # Old enough by the monotonic clock; or stored before this keeper began
                # and old enough by the receive time it was stored with.
                aged = min(passed, self.aged_id())
                kept_since = self.clock_ms() - self.keep_delivered_ms
                where = f"id <= {int(aged)} OR (id <= ? AND received_ms <= {int(kept_since)})"
                up_to = min(passed, self._started_head)
            readings = self._delete_chunks(
                f"DELETE FROM readings WHERE id IN (SELECT id FROM readings WHERE {where}"
                " ORDER BY id LIMIT ?)",
                up_to,
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
                self.note_arrivals()
                self.prune()
                if self.max_bytes > 0 and self.used_bytes > self.max_bytes:
                    self.prune(keep=False)
                self.enforce()
            except sqlite3.Error as exc:
                log.warning("outbox keeper: %s", exc)
            sleep_unless(stop, interval_s)


__all__ = ["POLICIES", "Consumers", "OutboxKeeper", "Policy", "used_bytes"]
