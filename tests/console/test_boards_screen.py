"""The Boards screen: filter as you type, sort by any column, the cursor kept on its board."""

from __future__ import annotations

import dataclasses

from textual.pilot import Pilot

from fleet.console.app import ConsoleApp
from fleet.console.screens.boards import BoardsScreen
from tests.console.conftest import SIZE
from tests.console.fakes import FakeFleet, make_fleet, until


async def _open_boards(app: ConsoleApp, pilot: Pilot[None]) -> BoardsScreen:
    await until(lambda: app.snapshots_received > 0)
    await pilot.press("b")
    await until(lambda: isinstance(app.screen, BoardsScreen) and app.screen.table.row_count > 0)
    screen = app.screen
    assert isinstance(screen, BoardsScreen)
    return screen


async def test_every_board_is_listed_by_id(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        screen = await _open_boards(console, pilot)
        assert screen.shown_boards == [f"b-{i:05d}" for i in range(40)]


async def test_typing_in_the_filter_narrows_the_rows(console: ConsoleApp, fleet: FakeFleet) -> None:
    async with console.run_test(size=SIZE) as pilot:
        screen = await _open_boards(console, pilot)
        await pilot.press("slash", *"water")
        await pilot.pause()
        water = [b.board_id for b in fleet.current.boards if b.kind == "water"]
        assert screen.shown_boards == water
        # A second term narrows further: water boards tagged north (even numbers).
        await pilot.press("space", *"north")
        await pilot.pause()
        assert screen.shown_boards == [b for b in water if int(b[2:]) % 2 == 0]
        # A state, a site, a release.
        await pilot.press("escape", "slash", *"never")
        await pilot.pause()
        assert screen.shown_boards == [f"b-{i:05d}" for i in range(0, 40, 10)]
        await pilot.press("escape", "slash", *"s-1 downloading")
        await pilot.pause()
        assert screen.shown_boards == ["b-00032"]
        await pilot.press("escape")
        await pilot.pause()
        assert len(screen.shown_boards) == 40


async def test_sorting_by_a_column_with_a_key_and_by_its_header(
    console: ConsoleApp, fleet: FakeFleet
) -> None:
    async with console.run_test(size=SIZE) as pilot:
        screen = await _open_boards(console, pilot)
        await pilot.press("s")  # board -> site
        await pilot.pause()
        assert screen.sort_column == "site"
        await pilot.press("r")
        await pilot.pause()
        sites = [b.site_id for b in fleet.current.boards]
        shown_sites = [fleet.current.boards[int(b[2:])].site_id for b in screen.shown_boards]
        assert shown_sites == sorted(sites, reverse=True)

        # Clicking the Battery header sorts by battery, boards without one last.
        table = screen.table
        x = next(x for x in range(400) if table.column_at(x) == "battery")
        await pilot.click(table, offset=(x + 1, 0))
        await pilot.pause()
        assert screen.sort_column == "battery"
        batteries = [fleet.current.boards[int(b[2:])].battery for b in screen.shown_boards]
        known = [v for v in batteries if v is not None]
        assert known == sorted(known)
        assert batteries[len(known) :] == [None] * (len(batteries) - len(known))


async def test_cursor_stays_on_its_board_across_a_live_update_that_reorders(
    console: ConsoleApp, fleet: FakeFleet
) -> None:
    async with console.run_test(size=SIZE) as pilot:
        screen = await _open_boards(console, pilot)
        screen.sort_by("battery")
        await pilot.pause()
        screen.table.move_cursor(row=5)
        board = screen.cursor_board
        assert board is not None
        before = screen.shown_boards.index(board)

        # Its battery falls to the lowest, three other boards leave, one comes.
        fleet.update_boards({board: {"battery": 2.9}})
        kept = tuple(b for b in fleet.current.boards if b.board_id not in {"b-00002", "b-00003"})
        newcomer = dataclasses.replace(make_fleet(1, 1, 1).boards[0], board_id="b-77777")
        fleet.current = dataclasses.replace(fleet.current, boards=(*kept, newcomer))
        seen = console.snapshots_received
        await until(lambda: console.snapshots_received > seen + 1)
        await pilot.pause()

        assert screen.shown_boards[0] == board != screen.shown_boards[before]
        assert screen.cursor_board == board
        assert "b-77777" in screen.shown_boards
        assert "b-00002" not in screen.shown_boards
        assert "2.90 V" in str(screen.table.cell(board, "battery"))


async def test_cursor_stays_on_its_board_while_filtering(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        screen = await _open_boards(console, pilot)
        screen.table.move_cursor(row=screen.shown_boards.index("b-00031"))
        await pilot.press("slash", *"s-1")
        await pilot.pause()
        assert screen.cursor_board == "b-00031"
        assert screen.table.cursor_row == screen.shown_boards.index("b-00031")
