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
from fleet.console.operations import (
    AlertRow,
    AlertsView,
    AuditRow,
    AuditView,
    HaltView,
    RolloutView,
    WaveView,
    alerts_view,
    audit_matches,
    filter_terms,
)
from fleet.errors import FleetError, NotFound
from fleet.health.quantities import QUANTITIES
from fleet.operations import RolloutError, RolloutRequest
from fleet.rollouts import ACTIVE, Target
from fleet.store import READING_BUCKET_MS
from gateway.control.messages import Limits

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
        releases=((4, "1.4.0"), (3, "1.3.2")),
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
                11,
                "battery_low",
                board.board_id,
                "board",
                "cleared",
                "warning",
                NOW_MS - 7_200_000,
                NOW_MS - 3_600_000,
                None,
                None,
                None,
                (("battery", "3.3"),),
            ),
        ),
        flood_levels=FLOOD_LEVELS,
    )


# --- rollouts, alerts, audit (the Rollouts, Alerts and Audit screens) ------------------------


def _waves(*counts: tuple[int, int, int, int]) -> tuple[WaveView, ...]:
    """Waves from (boards, confirmed, failed, reverted), soaking 600 s each."""
    return tuple(WaveView(i, *c, soak_s=600) for i, c in enumerate(counts))


def _rollout(
    rollout_id: str,
    state: str,
    target: Target,
    waves: tuple[WaveView, ...],
    *,
    took: int,
    age_ms: int,
    halt: HaltView | None = None,
) -> RolloutView:
    """A rollout of release ``r<seq>-…``; its revert release is a copy of the one before."""
    release = int(rollout_id[1 : rollout_id.index("-")])
    running = state in ("running", "paused", "halted")
    passed = sum(1 for w in waves if w.pending == 0) - 1
    return RolloutView(
        rollout_id=rollout_id,
        release=release,
        state=state,
        reason=halt.reason if halt else "pause by siti" if state == "paused" else None,
        target=target,
        waves=waves,
        current_wave=min(passed + 1, len(waves) - 1) if running else None,
        revert=release + 6,
        revert_from=release - 1,
        limits=Limits(0.1, 3600, 1800, 3),
        took=took,
        operator="siti",
        created_ms=NOW_MS - age_ms - 3_600_000,
        updated_ms=NOW_MS - age_ms,
        halt=halt,
    )


def make_rollouts() -> list[RolloutView]:
    """r3 done, r4 paused, r5 halted in wave 1, r7 running (12 boards took release 7)."""
    halt = HaltView(
        by="s-1-gw-0",
        rule="failures",
        wave=1,
        boards=("b-00024", "b-00027"),
        failed=2,
        wave_boards=8,
        threshold=0.1,
        reason="s-1-gw-0: wave 1: 2 of 8 boards failed: b-00024 (rejected: bad signature),"
        " b-00027 (not confirmed within 3600 s)",
    )
    return [
        _rollout("r3-0a0a0a", "done", Target(sites=("s-0",)),
                 _waves((2, 2, 0, 0), (18, 18, 0, 0)), took=20, age_ms=86_400_000),
        _rollout("r4-1b1b1b", "paused", Target(tags=("pilot",)),
                 _waves((1, 1, 0, 0), (4, 0, 0, 0)), took=1, age_ms=7_200_000),
        _rollout("r5-2c2c2c", "halted", Target(kinds=("water",)),
                 _waves((2, 2, 0, 0), (8, 3, 2, 0)), took=5, age_ms=600_000, halt=halt),
        _rollout("r7-abc123", "running", Target(sites=("s-0",)),
                 _waves((2, 2, 0, 0), (10, 10, 0, 0), (8, 0, 0, 0)), took=12, age_ms=60_000),
    ]  # fmt: skip


def make_alerts() -> list[AlertRow]:
    """Two open alerts (one critical, one acknowledged) and one cleared."""
    return [
        AlertRow(41, "battery_low", "b-00003", "board", "open", "warning", NOW_MS - 7_200_000,
                 None, NOW_MS - 3_600_000, "ana", "truck sent", (("battery", "3.31"),)),
        AlertRow(42, "gateway_stale", "s-1-gw-1", "gateway", "open", "critical",
                 NOW_MS - 900_000, None, None, None, None, (("silent_s", "900.0"),)),
        AlertRow(40, "reboot_loop", "b-00008", "board", "cleared", "critical",
                 NOW_MS - 86_400_000, NOW_MS - 80_000_000, None, None, None, (("boots", "6"),)),
    ]  # fmt: skip


def make_audit() -> list[AuditRow]:
    """An audit log, oldest first."""
    return [
        AuditRow(1, NOW_MS - 90_000_000, "ana", "init", "/srv/fleet/fleet.db", "ok", "{}"),
        AuditRow(2, NOW_MS - 89_000_000, "ana", "site.add", "s-0", "ok", "{}"),
        AuditRow(3, NOW_MS - 88_000_000, "ana", "site.add", "s-1", "ok", "{}"),
        AuditRow(4, NOW_MS - 80_000_000, "siti", "rollout.start", "r7-abc123", "ok", "{}"),
        AuditRow(5, NOW_MS - 70_000_000, "budi", "rollout.pause", "r3-0a0a0a", "error: done",
                 "{}"),
        AuditRow(6, NOW_MS - 600_000, "fleet-rules", "alert.raised", "gateway_stale:s-1-gw-1",
                 "ok", "{}"),
    ]  # fmt: skip


class FakeOperations:
    """Rollouts, alerts and the audit log in memory, acting as fleet.db would (refusing what
    ``fleet.operations`` refuses) and recording each action's call in :attr:`calls`."""

    operator = "tester"

    def __init__(self) -> None:
        self.rollout_views = make_rollouts()
        self.alert_rows = make_alerts()
        self.audit_rows = make_audit()
        self.audit_intact = True
        self.releases = {3, 4, 5, 6, 7, 8}
        #: (action, argument) of every action asked, refused or not.
        self.calls: list[tuple[str, object]] = []

    def _audit(self, action: str, target: str, result: str) -> None:
        seq = len(self.audit_rows) + 1
        row = AuditRow(seq, NOW_MS, self.operator, action, target, result, "{}")
        self.audit_rows.append(row)

    def _find(self, rollout_id: str) -> int:
        for index, view in enumerate(self.rollout_views):
            if view.rollout_id == rollout_id:
                return index
        raise RolloutError(f"no rollout {rollout_id!r}")

    def rollouts(self) -> tuple[RolloutView, ...]:
        return tuple(self.rollout_views)

    def start_rollout(self, request: RolloutRequest) -> str:
        self.calls.append(("start", request))
        if request.release not in self.releases:
            self._audit("rollout.start", "pending", f"error: no release {request.release}")
            raise RolloutError(f"the fleet holds no release {request.release}")
        rollout_id = request.rollout_id or f"r{request.release}-f{len(self.rollout_views):05d}"
        waves = _waves((request.waves.canary, 0, 0, 0), (10, 0, 0, 0))
        view = RolloutView(rollout_id, request.release, "running", None, request.target, waves,
                           0, request.release + 2, None, request.limits, 0, self.operator,
                           NOW_MS, NOW_MS)  # fmt: skip
        self.rollout_views.append(view)
        self._audit("rollout.start", rollout_id, "ok")
        return f"rollout {rollout_id} started"

    def _move(self, verb: str, rollout_id: str, allowed: tuple[str, ...], to: str) -> str:
        self.calls.append((verb, rollout_id))
        index = self._find(rollout_id)
        view = self.rollout_views[index]
        if view.state not in allowed:
            self._audit(f"rollout.{verb}", rollout_id, "error")
            raise RolloutError(f"rollout {rollout_id} is {view.state}: it cannot {verb}")
        self.rollout_views[index] = dataclasses.replace(
            view, state=to, reason=f"{verb} by {self.operator}", halt=None
        )
        self._audit(f"rollout.{verb}", rollout_id, "ok")
        return f"rollout {rollout_id} {to}"

    def pause_rollout(self, rollout_id: str) -> str:
        return self._move("pause", rollout_id, ("running",), "paused")

    def resume_rollout(self, rollout_id: str) -> str:
        return self._move("resume", rollout_id, ("paused", "halted"), "running")

    def abort_rollout(self, rollout_id: str) -> str:
        return self._move("abort", rollout_id, ACTIVE, "aborted")

    def alerts(self, recent_limit: int) -> AlertsView:
        opened = [a for a in self.alert_rows if a.state == "open"]
        recent = sorted(self.alert_rows, key=lambda a: -a.alert_id)[:recent_limit]
        return alerts_view(opened, recent)

    def acknowledge_alert(self, alert_id: int, note: str) -> str:
        self.calls.append(("ack", (alert_id, note)))
        if not note.strip():
            raise ValueError("an acknowledgement needs a note")
        for index, alert in enumerate(self.alert_rows):
            if alert.alert_id == alert_id:
                self.alert_rows[index] = dataclasses.replace(
                    alert, acked_ms=NOW_MS, acked_by=self.operator, note=note
                )
                self._audit("alert.ack", str(alert_id), "ok")
                return f"alert {alert_id} acknowledged"
        raise NotFound(f"unknown alert {alert_id}")

    def audit(self, text: str | None, limit: int) -> AuditView:
        terms = filter_terms(text)
        rows = [r for r in reversed(self.audit_rows) if audit_matches(r, terms)][:limit]
        problems = () if self.audit_intact else ("entry 3 was edited",)
        return AuditView(tuple(rows), len(self.audit_rows), self.audit_intact, problems)


class FakeFleet(FakeOperations):
    """The fleet the console reads, in memory. ``current`` is what the next read returns."""

    def __init__(self, snapshot: FleetSnapshot | None = None) -> None:
        super().__init__()
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
