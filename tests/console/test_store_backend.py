"""The console over a real fleet.db (``StoreBackend``): what ``simpul fleet serve`` recorded
is what the Fleet and Boards screens show."""

from __future__ import annotations

from pathlib import Path

from fleet.console.app import ConsoleApp
from fleet.console.backend import StoreBackend
from fleet.console.screens.boards import BoardsScreen
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
