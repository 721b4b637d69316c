"""The console over a real fleet.db (``StoreBackend``): what ``simpul fleet serve`` recorded
is what the Fleet and Boards screens show."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Static

from fleet import audit
from fleet.console.app import ConsoleApp
from fleet.console.backend import StoreBackend
from fleet.console.screens.boards import BoardsScreen
from fleet.errors import Conflict, FleetError, NotFound
from fleet.records import BoardReport
from fleet.store import DB_NAME, FleetStore
from tests.console.conftest import SIZE
from tests.console.fakes import NOW_MS, until


def test_a_snapshot_of_fleet_db_holds_its_boards_and_counts(tmp_path: Path) -> None:
    with FleetStore(tmp_path / DB_NAME) as store:
        store.add_site("takengon", "Takengon")
        store.add_gateway("gw-1", "takengon", bytes(32))
        for board in ("tkn-air-0001", "tkn-water-0002"):
            kind = board.split("-")[1]
            store.enroll_board(board, kind=kind, site_id="takengon", gateway_id="gw-1")
        store.record_state(
            "gw-1",
            seq=1,
            at_ms=NOW_MS,
            health={"backlog": 12},
            boards=[
                BoardReport(
                    "tkn-air-0001",
                    NOW_MS - 1000,
                    3,
                    "confirmed",
                    None,
                    {"battery": 3.9, "rssi": -70},
                    NOW_MS - 1000,
                )
            ],
        )
        store.raise_alert("stale", "tkn-water-0002", "board", {"silent_s": 900})
    backend = StoreBackend(tmp_path, operator="ana")
    try:
        snapshot = backend.snapshot()
    finally:
        backend.close()
    assert [b.board_id for b in snapshot.boards] == ["tkn-air-0001", "tkn-water-0002"]
    air = snapshot.boards[0]
    assert (air.running, air.ota_state, air.battery, air.rssi) == (3, "confirmed", 3.9, -70)
    assert snapshot.open_alerts == 1


async def test_the_console_shows_the_boards_of_a_real_fleet_db(tmp_path: Path) -> None:
    with FleetStore(tmp_path / DB_NAME) as store:
        store.add_site("tegal", "Tegal")
        store.add_gateway("gw-2", "tegal", bytes(32))
        store.enroll_board("tgl-bin-0001", kind="bin", site_id="tegal", gateway_id="gw-2")
    app = ConsoleApp(StoreBackend(tmp_path, operator="ana"), refresh_s=0.1, clock=lambda: NOW_MS)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.snapshots_received > 0)
        await pilot.press("b")
        await until(lambda: isinstance(app.screen, BoardsScreen) and app.screen.table.row_count > 0)
        screen = app.screen
        assert isinstance(screen, BoardsScreen)
        assert screen.shown_boards == ["tgl-bin-0001"]


def _board_fleet(path: Path) -> None:
    """A water board with an hour of readings, older ones, health reports and an alert."""
    with FleetStore(path / DB_NAME) as store:
        store.add_site("pidie", "Pidie", flood_levels={"siaga4": 1.5, "siaga3": 2.0})
        store.add_gateway("gw-1", "pidie", bytes(32))
        store.enroll_board("pd-water-0001", kind="water", site_id="pidie", gateway_id="gw-1")
        store.add_readings(
            "pd-water-0001",
            [("level", 1.0 + i / 100, NOW_MS - 3_600_000 + i * 60_000) for i in range(60)],
        )
        store.add_readings("pd-water-0001", [("level", 0.5, NOW_MS - 2 * 86_400_000)])
        for hour in range(3):
            at = NOW_MS - hour * 3_600_000
            store.add_health("pd-water-0001", at, {"battery": 3.9 - hour / 10, "rssi": -70})
        store.raise_alert("battery_low", "pd-water-0001", "board", {"v": 3.4}, at_ms=NOW_MS)


def test_board_detail_reads_history_latest_and_site_levels(tmp_path: Path) -> None:
    _board_fleet(tmp_path)
    backend = StoreBackend(tmp_path, operator="ana", clock=lambda: NOW_MS)
    try:
        detail = backend.board_detail("pd-water-0001", NOW_MS - 86_400_000)
        snapshot = backend.snapshot()
    finally:
        backend.close()
    (level,) = detail.readings
    assert (level.quantity, level.unit, sum(level.counts)) == ("level", "m", 60)
    assert [r.value for r in detail.latest] == [pytest.approx(1.59)]
    battery = next(h for h in detail.health if h.name == "battery")
    assert battery.values == pytest.approx((3.7, 3.8, 3.9))
    assert detail.flood_levels == (("siaga3", 2.0), ("siaga4", 1.5))
    assert [(a.rule, a.state) for a in detail.alerts] == [("battery_low", "open")]
    # The reading from two days ago is not today's.
    assert snapshot.readings_today == 60


def test_tag_and_retire_are_audited_and_a_command_without_broker_is_refused(
    tmp_path: Path,
) -> None:
    _board_fleet(tmp_path)
    backend = StoreBackend(tmp_path, operator="ana")
    try:
        said = backend.tag_board("pd-water-0001", ["river", "pilot"], [])
        assert said == "board pd-water-0001 tags: pilot, river"
        assert (
            backend.tag_board("pd-water-0001", [], ["pilot"]) == "board pd-water-0001 tags: river"
        )
        with pytest.raises(FleetError, match="no broker: start the console with --broker"):
            backend.reboot_board("pd-water-0001")
        assert backend.retire_board("pd-water-0001") == "board pd-water-0001 retired"
        with pytest.raises(Conflict, match="already retired"):
            backend.retire_board("pd-water-0001")
        with pytest.raises(NotFound):
            backend.tag_board("nope", ["x"], [])
    finally:
        backend.close()
    with FleetStore(tmp_path / DB_NAME) as store:
        entries, head = store.audit_log()
        board = store.board("pd-water-0001")
    assert audit.verify(entries, head) == []
    assert [(e.operator, e.action, e.target, e.detail, e.result) for e in entries] == [
        ("ana", "board.tag", "pd-water-0001", {"tags": ["pilot", "river"]}, "ok"),
        ("ana", "board.untag", "pd-water-0001", {"tags": ["pilot"]}, "ok"),
        ("ana", "board.retire", "pd-water-0001", {}, "ok"),
        (
            "ana",
            "board.retire",
            "pd-water-0001",
            {},
            "error: board 'pd-water-0001' is already retired",
        ),
    ]
    assert board is not None
    assert board.retired_ms is not None
    assert board.tags == ("river",)


async def test_the_summary_bar_counts_readings_of_today(tmp_path: Path) -> None:
    _board_fleet(tmp_path)
    backend = StoreBackend(tmp_path, operator="ana", clock=lambda: NOW_MS)
    app = ConsoleApp(backend, refresh_s=0.1, clock=lambda: NOW_MS)
    async with app.run_test(size=SIZE):
        await until(lambda: app.snapshots_received > 0)
        summary = app.screen.query_one("#summary", Static)
        assert "Readings today 60" in str(summary.render())
