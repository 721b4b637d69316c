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
from fleet.errors import NotFound
from fleet.operations import RolloutError, RolloutRequest
from fleet.rollouts import ACTIVE, Target
from gateway.control.messages import Limits

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
