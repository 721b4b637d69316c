"""Delivering stored batches upstream: one ordered, at-least-once loop over any transport.

:class:`BatchUplink` does what every batch uplink must: read batches after its durable cursor
(:class:`gateway.batch_log.BatchLog`), keep at most ``window`` of them in flight, advance the
cursor only over the contiguous prefix the transport has confirmed, and after a failure
start again from the cursor after an exponential backoff with jitter. So a batch may be sent
twice (at-least-once; consumers recognise a repeat) but never skipped, and each uplink goes
at its own pace: a broker that is down holds back nothing but its own uplink.

A transport is a :class:`BatchSender`, built on four primitives (``open``, ``send``,
``confirmed``, ``close``); MQTT (:mod:`gateway.uplink_mqtt`), HTTP
(:mod:`gateway.uplink_http`) and the batch file (:mod:`gateway.uplink_batch_file`) are
subclasses.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from gateway.batch_log import BatchLog, StoredBatch
from gateway.errors import UplinkError
from gateway.locks import sleep_unless

log = logging.getLogger(__name__)

#: How long to wait for confirmations while batches are in flight, per round, in seconds.
_CONFIRM_WAIT_S: Final = 0.05
#: How long to wait for a new batch before checking ``stop()`` again, in seconds.
_IDLE_WAIT_S: Final = 1.0


class BatchSender(ABC):
    """A transport for batches; :class:`BatchUplink` drives it.

    Every method may raise :class:`UplinkError` (or ``OSError``) when the link fails; the
    uplink then closes the sender, waits, opens it again and resends what was unconfirmed.
    """

    @abstractmethod
    def open(self) -> None:
        """Connect (and whatever else must happen before the first batch)."""

    @abstractmethod
    def send(self, batch: StoredBatch) -> None:
        """Start delivering one batch; batches are given in chain order."""

    @abstractmethod
    def confirmed(self, timeout_s: float) -> list[int]:
        """Seqs confirmed delivered since the last call, waiting up to ``timeout_s`` for one."""

    @abstractmethod
    def close(self, *, graceful: bool) -> None:
        """Disconnect; ``graceful`` when the gateway stops (not after a failure)."""

    def cursor_note(self) -> int | None:
        """A value to store with the cursor (the batch file's size); None for most."""
        return None


@dataclass
class Backoff:
    """Exponential backoff with jitter: ``base * 2**n`` capped at ``maximum``, times 0.5 to 1."""

    base_s: float = 0.5
    maximum_s: float = 30.0
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        delay = min(self.base_s * (2**self.failures), self.maximum_s)
        self.failures += 1
        return float(delay * self.rng.uniform(0.5, 1.0))

    def reset(self) -> None:
        self.failures = 0


@dataclass
class UplinkStats:
    """What one uplink process has done since it started."""

    sent: int = 0
    delivered: int = 0
    failures: int = 0
    last_error: str | None = None


class BatchUplink:
    """Delivers the batch log through one sender, in order, until told to stop."""

    def __init__(
        self,
        name: str,
        batch_log: BatchLog,
        sender: BatchSender,
        *,
        window: int = 16,
        backoff: Backoff | None = None,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.name = name
        self.log = batch_log
        self.sender = sender
        self.window = window
        self.backoff = backoff or Backoff()
        self.stats = UplinkStats()

    @property
    def delivered_seq(self) -> int:
        return self.log.progress(self.name)[0]

    def run(self, stop: Callable[[], bool]) -> None:
        """Connect, deliver, and on any failure back off and start again from the cursor."""
        while not stop():
            try:
                self.sender.open()
                self._deliver(stop)
            except (UplinkError, OSError, sqlite3.Error) as exc:
                self.stats.failures += 1
                self.stats.last_error = str(exc)
                delay = self.backoff.next_delay()
                log.warning("uplink %s: %s; retrying in %.1f s", self.name, exc, delay)
                self.sender.close(graceful=False)
                sleep_unless(stop, delay)
            else:
                self.sender.close(graceful=True)
                return

    def _deliver(self, stop: Callable[[], bool]) -> None:
        """Keep the window full and the cursor moving until ``stop()``; raises on failure."""
        cursor = self.delivered_seq
        sent_up_to = cursor
        in_flight: deque[int] = deque()
        confirmed: set[int] = set()
        while not stop():
            room = self.window - len(in_flight)
            if room > 0:
                for batch in self.log.fetch_after(sent_up_to, room):
                    self.sender.send(batch)
                    in_flight.append(batch.seq)
                    sent_up_to = batch.seq
                    self.stats.sent += 1
            if not in_flight:
                self.log.wait_for_batches(sent_up_to, _IDLE_WAIT_S, stop=stop)
                continue
            confirmed.update(self.sender.confirmed(_CONFIRM_WAIT_S))
            advanced = None
            while in_flight and in_flight[0] in confirmed:
                advanced = in_flight.popleft()
                confirmed.discard(advanced)
            if advanced is not None:
                self.log.mark_delivered(self.name, advanced, self.sender.cursor_note())
                self.stats.delivered = advanced
                self.backoff.reset()


def wait_until(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.01) -> bool:
    """Poll ``predicate`` until true or ``timeout_s`` passes; its last answer."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step_s)
    return True


__all__ = ["Backoff", "BatchSender", "BatchUplink", "UplinkStats", "wait_until"]
