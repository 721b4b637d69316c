"""An in-memory fleet for the console: a complete :class:`FleetBackend` whose snapshot the test
replaces, which counts reads, can be made to stall, generates each board's history, and
records the actions asked of it."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from fleet.console.backend import (
    NO_BROKER,
    AlertRow,
    BoardDetail,
    BoardRow,
    FleetSnapshot,
    GatewayRow,
    HealthSeries,
    LatestReading,
    ReadingSeries,
    RolloutStep,
    SiteRow,
)
from fleet.errors import FleetError, NotFound
from fleet.health.quantities import QUANTITIES
from fleet.store import READING_BUCKET_MS

#: The fixed "now" every console test runs at (2025-06-15 12:00:00Z).
NOW_MS: Final = 1_749_988_800_000
KINDS: Final = ("air", "water", "bin")
#: What each kind of board measures, and a believable level of each.
MEASURES: Final = {
    "air": {"pm2_5": 22.0, "pm10": 41.0, "temperature": 29.0, "humidity": 74.0},
    "water": {"level": 1.2},
    "bin": {"fill": 48.0},
}
#: Every site's flood alert levels (m).
FLOOD_LEVELS: Final = (("siaga1", 3.0), ("siaga2", 2.5), ("siaga3", 2.0), ("siaga4", 1.5))


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
        readings_today=5_184,
    )


def _wave(base: float, count: int, phase: int) -> tuple[float, ...]:
    """``count`` values swinging a fifth around ``base`` over a day."""
    return tuple(
        round(base * (1 + 0.2 * math.sin((i + phase) * 2 * math.pi / 96)), 3) for i in range(count)
    )


def make_detail(board: BoardRow, since_ms: int, levels: Mapping[str, float]) -> BoardDetail:
    """A day of believable history for ``board``: 15-minute buckets of what its kind
    measures (flat at ``levels[quantity]`` where given) and a health report each hour."""
    start = since_ms - since_ms % READING_BUCKET_MS + READING_BUCKET_MS
    starts = tuple(range(start, NOW_MS, READING_BUCKET_MS))
    phase = int(board.board_id[2:]) if board.board_id[2:].isdigit() else 0
    readings = []
    for quantity, base in MEASURES.get(board.kind, {}).items():
        fixed = levels.get(quantity)
        means = (fixed,) * len(starts) if fixed is not None else _wave(base, len(starts), phase)
        readings.append(
            ReadingSeries(
                quantity,
                QUANTITIES[quantity].unit,
                starts,
                (4,) * len(starts),
                means,
                tuple(m * 0.9 for m in means),
                tuple(m * 1.1 for m in means),
            )
        )
    hours = tuple(range(NOW_MS - 23 * 3_600_000, NOW_MS + 1, 3_600_000))
    battery = board.battery or 3.7
    health = (
        HealthSeries(
            "battery",
            "V",
            hours,
            tuple(round(battery + 0.01 * (23 - i), 2) for i in range(len(hours))),
        ),
        HealthSeries("rssi", "dBm", hours, _wave(board.rssi or -70.0, len(hours), phase)),
        HealthSeries("heap_free", "B", hours, (81_920.0,) * len(hours)),
        HealthSeries("boot_count", "", hours, tuple(12.0 + i // 12 for i in range(len(hours)))),
    )
    latest = tuple(
        LatestReading(r.quantity, r.means[-1], NOW_MS - 60_000) for r in readings if r.means
    )
    return BoardDetail(
        board=board,
        desired=board.running,
        ota_detail=None,
        retired_ms=None,
        readings=tuple(sorted(readings, key=lambda r: r.quantity)),
        health=health,
        latest=tuple(sorted(latest, key=lambda r: r.quantity)),
        rollouts=(RolloutStep("r-7", board.running, "done", 1, "confirmed", NOW_MS - 86_400_000),),
        alerts=(
            AlertRow(
                11, "battery_low", "cleared", NOW_MS - 7_200_000, NOW_MS - 3_600_000, None, None
            ),
        ),
        flood_levels=FLOOD_LEVELS,
    )


class FakeFleet:
    """The fleet the console reads, in memory. ``current`` is what the next read returns."""

    def __init__(self, snapshot: FleetSnapshot | None = None) -> None:
        self.current = snapshot if snapshot is not None else make_fleet()
        self.reads = 0
        #: Board details read: (board id, since ms).
        self.detail_reads: list[tuple[str, int]] = []
        #: Quantities held flat at a value: ``levels[board_id][quantity]``.
        self.levels: dict[str, dict[str, float]] = {}
        #: Actions done, in order: ``("reboot", board_id)``, ``("tag", id, add, remove)``...
        self.actions: list[tuple[object, ...]] = []
        #: Commands to gateways (reboot, log) are refused like a console without a broker.
        self.broker = True
        self.log = "board {board} · known to its gateway: True\nno events"
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

    def board_detail(self, board_id: str, since_ms: int) -> BoardDetail:
        self.detail_reads.append((board_id, since_ms))
        return make_detail(self._board(board_id), since_ms, self.levels.get(board_id, {}))

    def _board(self, board_id: str) -> BoardRow:
        for board in self.current.boards:
            if board.board_id == board_id:
                return board
        raise NotFound(f"unknown board {board_id!r}")

    def reboot_board(self, board_id: str) -> str:
        board = self._board(board_id)
        if not self.broker:
            raise FleetError(NO_BROKER)
        self.actions.append(("reboot", board_id))
        return f"reboot of {board_id} sent to gateway {board.gateway_id}"

    def fetch_log(self, board_id: str) -> str:
        self._board(board_id)
        if not self.broker:
            raise FleetError(NO_BROKER)
        self.actions.append(("log", board_id))
        return self.log.format(board=board_id)

    def tag_board(self, board_id: str, add: Sequence[str], remove: Sequence[str]) -> str:
        board = self._board(board_id)
        tags = tuple(sorted((set(board.tags) | set(add)) - set(remove)))
        self.update_boards({board_id: {"tags": tags}})
        self.actions.append(("tag", board_id, tuple(add), tuple(remove)))
        return f"board {board_id} tags: {', '.join(tags) or 'none'}"

    def retire_board(self, board_id: str) -> str:
        self._board(board_id)
        boards = tuple(b for b in self.current.boards if b.board_id != board_id)
        self.current = dataclasses.replace(self.current, boards=boards)
        self.actions.append(("retire", board_id))
        return f"board {board_id} retired"

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
