"""The batcher: turns the readings outbox into signed, hash-chained batches.

It reads the ``readings`` table after its own cursor, cuts a batch when ``max_readings`` are
waiting or the oldest waiting reading has waited ``max_age_ms``, signs it with the
gateway's identity (:func:`gateway.batches.format.build`; the key from
:meth:`gateway.batches.keys.GatewayIdentity.signer_for`, which also carries a rotation through),
and stores it with the new chain state and cursor in one transaction
(:meth:`gateway.store.batch_log.BatchLog.append`). Batch uplinks take it from there.

How long a reading has waited is measured on the monotonic clock from when the batcher saw
it arrive, so a wall clock set back by hours does not hold batches back for hours (nor does
one set forward cut them early); a reading stored before the batcher started counts from
its start, or from its receive time if that says it is due already. The wall clock only
stamps a batch's ``created_ms``.

One batcher at a time per state directory: it holds an exclusive lock on
``<state_dir>/batcher.lock``, so one left over from a killed gateway finishes first.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from typing import Final

from gateway.batches.format import build
from gateway.batches.keys import GatewayIdentity
from gateway.processes import sleep_unless
from gateway.store.batch_log import BatchLog, ChainHead, ChainMoved
from gateway.store.outbox import OutboxRow, fetch_rows, head_id, received_ms_after
from gateway.store.schema import now_ms

log = logging.getLogger(__name__)

_RETRY_MIN_S: Final = 0.5
_RETRY_MAX_S: Final = 30.0


class Batcher:
    """Builds and stores batches; :meth:`run` until told to stop, :meth:`batch_once` for tests."""

    def __init__(
        self,
        log_: BatchLog,
        identity: GatewayIdentity,
        *,
        gateway_id: str,
        site: str,
        max_readings: int = 1000,
        max_age_ms: int = 1000,
        poll_s: float = 0.02,
        clock_ms: Callable[[], int] = now_ms,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_readings < 1:
            raise ValueError("max_readings must be at least 1")
        self.log = log_
        self.identity = identity
        self.gateway_id = gateway_id
        self.site = site
        self.max_readings = max_readings
        self.max_age_ms = max_age_ms
        self.poll_s = poll_s
        self.clock_ms = clock_ms
        self.monotonic = monotonic
        self.head: ChainHead = log_.head()
        #: (monotonic s, outbox head id) whenever the head was seen to move, oldest first.
        self._arrivals: deque[tuple[float, int]] = deque()
        self._started = monotonic()
        self._started_head = head_id(log_.db)
        #: Batches built by this process, and readings that could not be signed (skipped).
        self.built = 0
        self.invalid = 0

    def waiting(self) -> int:
        """Readings stored but not yet in a batch (ids are dense; pruning only goes behind)."""
        head = head_id(self.log.db)
        if head > (self._arrivals[-1][1] if self._arrivals else self._started_head):
            self._arrivals.append((self.monotonic(), head))
        return max(head - self.head.batched_id, 0)

    def due_in_ms(self) -> int | None:
        """Milliseconds until a batch is due (0: now); None when no reading waits."""
        waiting = self.waiting()
        if waiting == 0:
            return None
        if waiting >= self.max_readings:
            return 0
        oldest = self.head.batched_id + 1
        arrivals = self._arrivals
        while arrivals and arrivals[0][1] < oldest:
            arrivals.popleft()  # batched already
        if oldest <= self._started_head:
            seen = self._started
        elif arrivals:
            seen = arrivals[0][0]
        else:
            return None
        due_ms = (seen - self.monotonic()) * 1000 + self.max_age_ms
        if oldest <= self._started_head:
            received = received_ms_after(self.log.db, self.head.batched_id)
            if received is not None:
                due_ms = min(due_ms, received + self.max_age_ms - self.clock_ms())
        return max(round(due_ms), 0)

    def batch_once(self, *, force: bool = False) -> int:
        """Build and store one batch of the waiting readings if one is due (or ``force``).

        Returns how many readings it carries (0: none was due).
        """
        due = self.due_in_ms()
        if due is None or (due > 0 and not force):
            return 0
        rows = fetch_rows(self.log.db, self.head.batched_id, self.max_readings)
        if not rows:
            return 0
        try:
            try:
                return self._store(rows)
            except ValueError:  # a row whose value does not fit its kind: never from intake
                return self._store(self._signable(rows))
        except ChainMoved:
            log.warning("batcher: another batcher extended the chain; reloading it")
            self.head = self.log.head()
            return 0

    def _store(self, rows: list[OutboxRow]) -> int:
        head = self.head
        key, next_key = self.identity.signer_for(head.state)
        created = self.clock_ms()
        encoded, state = build(
            key,
            head.state,
            rows,
            created,
            gateway=self.gateway_id,
            site=self.site,
            next_key=next_key,
        )
        self.head = self.log.append(
            head,
            encoded,
            state,
            first_id=rows[0].id,
            last_id=rows[-1].id,
            readings=len(rows),
            created_ms=created,
        )
        self.built += 1
        return len(rows)

    def _signable(self, rows: list[OutboxRow]) -> list[OutboxRow]:
        """``rows`` without those that cannot be signed, each skipped one logged and counted.

        If none is left, the cursor moves past them all and :class:`ChainMoved` makes the
        caller start again.
        """
        key = self.identity.current.private
        good = []
        for row in rows:
            try:
                build(key, self.head.state, [row], 0, gateway=self.gateway_id, site=self.site)
            except ValueError as exc:
                self.invalid += 1
                log.error("batcher: skipping a reading that cannot be signed: %s", exc)
            else:
                good.append(row)
        self.log.skip_unsignable(self.head, 0 if good else rows[-1].id, len(rows) - len(good))
        if not good:
            raise ChainMoved("only unsignable readings: skipped")
        return good

    def run(self, stop: Callable[[], bool]) -> None:
        """Batch until ``stop()`` says so; retry with backoff on store errors."""
        delay = _RETRY_MIN_S
        while not stop():
            try:
                if self.batch_once():
                    delay = _RETRY_MIN_S
                    continue
                due = self.due_in_ms()
            except (sqlite3.Error, OSError) as exc:
                log.warning("batcher: %s; retrying in %.1f s", exc, delay)
                sleep_unless(stop, delay)
                delay = min(delay * 2, _RETRY_MAX_S)
                continue
            wait_s = self.poll_s if due is None else min(max(due / 1000, 0.001), self.poll_s * 5)
            time.sleep(wait_s)


__all__ = ["Batcher"]
