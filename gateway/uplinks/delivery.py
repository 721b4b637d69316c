"""Delivering the outbox upstream: one ordered, at-least-once loop that every uplink runs.

:class:`Delivery` does what every uplink must: read items (readings or signed batches)
after its durable cursor (a :class:`Source`), keep at most ``window`` of them in flight,
advance the cursor only over the contiguous prefix the transport has confirmed, and after a
failure start again from the cursor after an exponential backoff with jitter. So an item may
be sent twice (at-least-once; consumers recognise a repeat) but never skipped, and each
uplink goes at its own pace: a broker that is down holds back nothing but its own uplink.

A transport is a :class:`Sender`, built on four primitives (``open``, ``send``,
``confirmed``, ``close``): the JSON Lines file of readings (:mod:`gateway.uplinks.jsonl`),
MQTT (:mod:`gateway.uplinks.mqtt`), HTTP (:mod:`gateway.uplinks.http`) and the batch file
(:mod:`gateway.uplinks.batch_file`). The sources are the readings outbox
(:class:`gateway.store.outbox.Outbox`) and the batch log
(:class:`gateway.store.batch_log.BatchOutbox`).
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, Protocol, TypeVar

from gateway.errors import UplinkError
from gateway.processes import sleep_unless

log = logging.getLogger(__name__)

#: How long to wait for confirmations while items are in flight, per round, in seconds.
_CONFIRM_WAIT_S: Final = 0.05
#: How long to wait for a new item before checking ``stop()`` again, in seconds.
_IDLE_WAIT_S: Final = 1.0


class Positioned(Protocol):
    """An item of an outbox: its ``position`` is what the cursor counts (id or seq)."""

    @property
    def position(self) -> int: ...


ItemT = TypeVar("ItemT", bound=Positioned)
ItemT_co = TypeVar("ItemT_co", bound=Positioned, covariant=True)


class Source(Protocol[ItemT_co]):
    """A durable, ordered outbox with one uplink's cursor in it."""

    def delivered(self) -> int:
        """The position of the last item this uplink delivered (0: none yet)."""
        ...

    def fetch_after(self, position: int, limit: int) -> Sequence[ItemT_co]:
        """Up to ``limit`` items after ``position``, in order."""
        ...

    def wait_after(self, position: int, timeout_s: float, stop: Callable[[], bool]) -> bool:
        """Whether an item after ``position`` is stored, waiting up to ``timeout_s``."""
        ...

    def mark_delivered(self, position: int, note: int | None) -> None:
        """Move the cursor to ``position`` (never backwards), with the sender's note."""
        ...


class Sender(ABC, Generic[ItemT]):
    """A transport for one uplink; :class:`Delivery` drives it.

    Every method may raise :class:`UplinkError` (or ``OSError``) when the link fails; the
    loop then closes the sender, waits, opens it again and resends what was unconfirmed.
    """

    @abstractmethod
    def open(self) -> None:
        """Connect (and whatever else must happen before the first item)."""

    @abstractmethod
    def send(self, item: ItemT) -> None:
        """Start delivering one item; items are given in outbox order."""

    @abstractmethod
    def confirmed(self, timeout_s: float) -> list[int]:
        """Positions confirmed delivered since the last call, waiting up to ``timeout_s``."""

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


class Delivery(Generic[ItemT]):
    """Delivers one source through one sender, in order, until told to stop."""

    def __init__(
        self,
        name: str,
        source: Source[ItemT],
        sender: Sender[ItemT],
        *,
        window: int = 16,
        backoff: Backoff | None = None,
        linger_s: float = 0.0,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.name = name
        self.source = source
        self.sender = sender
        self.window = window
        self.backoff = backoff or Backoff()
        #: After an idle wait, let more items gather for this long: fewer, larger sends.
        self.linger_s = linger_s
        self.stats = UplinkStats()

    @property
    def delivered(self) -> int:
        return self.source.delivered()

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
        sent_up_to = self.source.delivered()
        in_flight: deque[int] = deque()
        confirmed: set[int] = set()
        while not stop():
            room = self.window - len(in_flight)
            if room > 0:
                for item in self.source.fetch_after(sent_up_to, room):
                    self.sender.send(item)
                    in_flight.append(item.position)
                    sent_up_to = item.position
                    self.stats.sent += 1
            if not in_flight:
                if self.source.wait_after(sent_up_to, _IDLE_WAIT_S, stop) and self.linger_s:
                    time.sleep(self.linger_s)
                continue
            confirmed.update(self.sender.confirmed(_CONFIRM_WAIT_S))
            advanced = None
            while in_flight and in_flight[0] in confirmed:
                advanced = in_flight.popleft()
                confirmed.discard(advanced)
            if advanced is not None:
                self.source.mark_delivered(advanced, self.sender.cursor_note())
                self.stats.delivered = advanced
                self.backoff.reset()


__all__ = ["Backoff", "Delivery", "Positioned", "Sender", "Source", "UplinkStats"]
