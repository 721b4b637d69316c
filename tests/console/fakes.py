"""An in-memory fleet for the console: a complete :class:`FleetBackend` whose snapshot the test
replaces, which counts reads, and which can be made to stall."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from typing import Final

from fleet.console.backend import BoardRow, FleetSnapshot, GatewayRow, SiteRow

#: The fixed "now" every console test runs at (2025-06-15 12:00:00Z).
NOW_MS: Final = 1_749_988_800_000
KINDS: Final = ("air", "water", "bin")


def make_board(index: int, site_id: str, gateway_id: str) -> BoardRow:
    """Board ``index``: every 10th never seen, every 10th+1 stale for an hour, others online."""
    seen: int | None = NOW_MS - 30_000
    if index % 10 == 0:
        seen = None
    elif index % 10 == 1:
        seen = NOW_MS - 3_600_000
    return BoardRow(
        board_id=f"b-{index:05d}",
        kind=KINDS[index % 3],
        site_id=site_id,
        gateway_id=gateway_id,
        tags=("north",) if index % 2 == 0 else ("south", "pilot") if index % 4 == 1 else (),
        running=3 + index % 2,
        ota_state="downloading" if index % 25 == 7 else None,
        last_seen_ms=seen,
        battery=None if seen is None else round(3.3 + (index * 7 % 90) / 100, 2),
        rssi=None if seen is None else float(-45 - index * 13 % 50),
    )


def make_fleet(
    sites: int = 2, gateways_per_site: int = 2, boards_per_gateway: int = 10
) -> FleetSnapshot:
    """A generated fleet: sites ``s-0..``, gateways ``s-0-gw-0..``, boards numbered in order."""
    site_rows, gateway_rows, board_rows = [], [], []
    index = 0
    for s in range(sites):
        site_id = f"s-{s}"
        site_rows.append(SiteRow(site_id, f"Site {s}"))
        for g in range(gateways_per_site):
            gateway_id = f"{site_id}-gw-{g}"
            backlog = 120 if (s, g) == (0, 1) else 0
            gateway_rows.append(GatewayRow(gateway_id, site_id, NOW_MS - 5_000, backlog))
            for _ in range(boards_per_gateway):
                board_rows.append(make_board(index, site_id, gateway_id))
                index += 1
    return FleetSnapshot(
        sites=tuple(site_rows),
        gateways=tuple(gateway_rows),
        boards=tuple(board_rows),
        open_alerts=3,
        running_rollouts=1,
    )


class FakeFleet:
    """The fleet the console reads, in memory. ``current`` is what the next read returns."""

    def __init__(self, snapshot: FleetSnapshot | None = None) -> None:
        self.current = snapshot if snapshot is not None else make_fleet()
        self.reads = 0
        self.closed = False
        #: While set, each read sleeps this long (or until :meth:`release`).
        self.stall_s = 0.0
        self.stalling = threading.Event()
        self._release = threading.Event()

    def snapshot(self) -> FleetSnapshot:
        self.reads += 1
        if self.stall_s:
            self.stalling.set()
            try:
                self._release.wait(self.stall_s)
            finally:
                self.stalling.clear()
        return self.current

    def close(self) -> None:
        self.closed = True

    def release(self) -> None:
        """End a stall now (so the test does not wait for it at exit)."""
        self.stall_s = 0.0
        self._release.set()

    def update_boards(self, changes_by_id: Mapping[str, Mapping[str, object]]) -> None:
        """Change fields of boards by id: ``update_boards({"b-00003": {"battery": 3.1}})``."""
        boards = tuple(
            dataclasses.replace(b, **changes_by_id[b.board_id])  # type: ignore[arg-type]
            if b.board_id in changes_by_id
            else b
            for b in self.current.boards
        )
        self.current = dataclasses.replace(self.current, boards=boards)

    def wait_stalling(self, timeout: float = 2.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stalling.is_set():
                return True
            time.sleep(0.005)
        return False


async def until(condition: Callable[[], bool], within_s: float = 3.0) -> None:
    """Let the app run until ``condition`` holds (fails the test after ``within_s``)."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the console did not get there in time")
        await asyncio.sleep(0.01)
