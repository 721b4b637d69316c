"""What the app and its screens share: the messages that carry snapshots, and the context a
screen is built with. Kept apart from ``app.py`` so screens need not import the app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from textual.message import Message

from fleet.console.backend import FleetBackend, FleetSnapshot


@dataclass
class SnapshotReady(Message):
    """A worker read a new snapshot of the fleet."""

    snapshot: FleetSnapshot


@dataclass
class BackendFailed(Message):
    """A worker's read failed; the next poll tries again."""

    error: str


@dataclass
class ActionDone(Message):
    """An action the operator asked for ended: ``result`` says what it did, or ``error`` why
    the fleet refused it."""

    label: str
    result: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class ViewContext:
    """What every screen is given: the clock (Unix ms; tests fix it), how long a silent board
    stays online, the latest snapshot (``None`` before the first), the backend (call it only
    from thread workers), ``act``, which runs an action of the backend in a worker and
    reports its result (with ``confirm=(title, consequence)`` it asks the operator first),
    and ``open_board``, which shows a board's screen over the one in view.
    """

    now_ms: Callable[[], int]
    stale_after_ms: int
    latest: Callable[[], FleetSnapshot | None]
    backend: FleetBackend
    act: Act
    open_board: Callable[[str], None]


class Act(Protocol):
    def __call__(
        self, label: str, call: Callable[[], str], *, confirm: tuple[str, str] | None = None
    ) -> None: ...


@runtime_checkable
class SnapshotView(Protocol):
    """A screen that draws snapshots; the app hands it each new one while it is in view."""

    def show_snapshot(self, snapshot: FleetSnapshot) -> None: ...
