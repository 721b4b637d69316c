"""The Board screen: opened from the Boards table, the Fleet tree and the palette; what a
board's readings mean by its kind; sparklines; actions confirmed, refused, done."""

from __future__ import annotations

from rich.text import Text
from textual.command import CommandList
from textual.pilot import Pilot
from textual.widgets import Input, Static

from fleet.console.app import READ_ONLY_REFUSAL, ConsoleApp
from fleet.console.screens.board import BoardScreen, badge_style
from fleet.console.screens.boards import BoardsScreen
from fleet.console.screens.confirm import ConfirmScreen
from fleet.console.screens.fleet import FleetScreen
from fleet.console.screens.log import LogScreen
from fleet.console.screens.tag import TagScreen
from fleet.levels import SANGAT_TIDAK_SEHAT, SEDANG
from tests.console.conftest import SIZE
from tests.console.fakes import NOW_MS, FakeFleet, until

# make_fleet's kinds go air, water, bin by index: b-00003 air, b-00004 water, b-00005 bin.
AIR, WATER, BIN = "b-00003", "b-00004", "b-00005"


def _text(screen: BoardScreen, selector: str) -> Text:
    content = screen.query_one(selector, Static).content
    assert isinstance(content, Text)
    return content


async def _open_from_boards(app: ConsoleApp, pilot: Pilot[None], board_id: str) -> BoardScreen:
    await until(lambda: app.snapshots_received > 0)
    await pilot.press("b")
    await until(lambda: isinstance(app.screen, BoardsScreen) and app.screen.table.row_count > 0)
    await pilot.press("slash", *board_id)
    boards = app.screen
    assert isinstance(boards, BoardsScreen)
    await until(lambda: boards.shown_boards == [board_id])
    await pilot.press("enter")
    await until(lambda: isinstance(app.screen, BoardScreen) and app.screen.detail is not None)
    screen = app.screen
    assert isinstance(screen, BoardScreen)
    assert screen.board_id == board_id
    return screen


async def test_a_board_found_by_filter_opens_on_enter_and_escape_goes_back(
    console: ConsoleApp,
) -> None:
    async with console.run_test(size=SIZE) as pilot:
        screen = await _open_from_boards(console, pilot, AIR)
        header = _text(screen, "#board-header").plain
        assert "b-00003  air  site s-0  gateway s-0-gw-0" in header
        assert "release running 4" in header
        assert "online" in header
        await pilot.press("escape")
        await until(lambda: isinstance(console.screen, BoardsScreen))
        # Back on the table, not in the filter: keys drive the screen again.
        boards = console.screen
        assert isinstance(boards, BoardsScreen)
        assert boards.table.has_focus
        await pilot.press("s")
        await until(lambda: boards.sort_column == "site")
        assert boards.filter_input.value == AIR


async def test_enter_on_a_board_in_the_fleet_tree_opens_it(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await until(lambda: console.snapshots_received > 0)
        fleet_screen = console.screen
        assert isinstance(fleet_screen, FleetScreen)
        gateway = fleet_screen.node("gateway", "s-0-gw-0")
        assert gateway is not None
        gateway.expand()
        await pilot.pause()
        node = fleet_screen.node("board", BIN)
        assert node is not None
        fleet_screen.fleet_tree.move_cursor(node)
        await pilot.press("enter")
        await until(lambda: isinstance(console.screen, BoardScreen))
        assert isinstance(console.screen, BoardScreen)
        assert console.screen.board_id == BIN


async def test_the_palette_opens_a_board_by_id(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await until(lambda: console.snapshots_received > 0)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"open board b-00017")
        commands = console.screen.query_one(CommandList)
        await until(lambda: commands.option_count > 0 and commands.highlighted is not None)
        option = commands.get_option_at_index(commands.highlighted or 0)
        assert "Open board b-00017" in str(option.prompt)
        await pilot.press("enter")
        await until(lambda: isinstance(console.screen, BoardScreen))
        assert isinstance(console.screen, BoardScreen)
        assert console.screen.board_id == "b-00017"


async def test_an_air_board_shows_the_ispu_category_of_its_day_in_its_colour(
    console: ConsoleApp, fleet: FakeFleet
) -> None:
    fleet.levels[AIR] = {"pm2_5": 35.0, "pm10": 40.0}  # PM2.5 35.0: ISPU 75 (74.4 up), Sedang
    async with console.run_test(size=SIZE) as pilot:
        screen = await _open_from_boards(console, pilot, AIR)
        status = _text(screen, "#board-status")
        assert "ISPU  75 Sedang  (Moderate)" in status.plain
        assert "PM2.5 35 ug/m3 ◀" in status.plain
        assert badge_style(SEDANG.colour) in {str(span.style) for span in status.spans}

        # The day turns bad: the next snapshot brings it.
        fleet.levels[AIR] = {"pm2_5": 200.0}
        await until(lambda: "Sangat Tidak Sehat" in _text(screen, "#board-status").plain)
        styles = {str(span.style) for span in _text(screen, "#board-status").spans}
        assert badge_style(SANGAT_TIDAK_SEHAT.colour) in styles


async def test_a_water_board_shows_its_level_against_the_sites_siaga_levels(
    console: ConsoleApp, fleet: FakeFleet
) -> None:
    fleet.levels[WATER] = {"level": 2.2}  # Siaga III from 2.0 m, Siaga II at 2.5 m
    async with console.run_test(size=SIZE) as pilot:
        screen = await _open_from_boards(console, pilot, WATER)
        status = _text(screen, "#board-status").plain
        assert "Flood  Siaga III   water level 2.2 m · 0.3 m below Siaga II" in status
        assert "Siaga IV 1.5 m, Siaga III 2 m, Siaga II 2.5 m, Siaga I 3 m" in status


async def test_a_bin_board_shows_its_fill(console: ConsoleApp, fleet: FakeFleet) -> None:
    fleet.levels[BIN] = {"fill": 82.0}
    async with console.run_test(size=SIZE) as pilot:
        screen = await _open_from_boards(console, pilot, BIN)
        assert "Fill  nearly full   82 %" in _text(screen, "#board-status").plain


async def test_sparklines_carry_the_days_readings_and_health(
    console: ConsoleApp, fleet: FakeFleet
) -> None:
    async with console.run_test(size=SIZE) as pilot:
        screen = await _open_from_boards(console, pilot, AIR)
        detail = screen.detail
        assert detail is not None
        pm = next(s for s in detail.readings if s.quantity == "pm2_5")
        assert len(pm.means) == 95
        assert screen.sparkline("reading-pm2_5").data == list(pm.means)
        battery = next(h for h in detail.health if h.name == "battery")
        assert screen.sparkline("health-battery").data == list(battery.values)
        for key in ("reading-pm10", "health-rssi", "health-heap_free", "health-boot_count"):
            assert screen.sparkline(key).data
        # The day asked for is the last 24 h of the console's clock.
        assert fleet.detail_reads[-1] == (AIR, 1_749_988_800_000 - 86_400_000)


async def test_reboot_asks_first_and_does_nothing_on_no(
    console: ConsoleApp, fleet: FakeFleet
) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await _open_from_boards(console, pilot, AIR)
        await pilot.press("r")
        await until(lambda: isinstance(console.screen, ConfirmScreen))
        confirm = console.screen
        assert isinstance(confirm, ConfirmScreen)
        assert confirm.consequence == (
            "Board b-00003 restarts at its next contact with gateway s-0-gw-0."
            " Its buffered readings are kept."
        )
        await pilot.press("n")
        await until(lambda: isinstance(console.screen, BoardScreen))
        await pilot.pause(0.2)
        assert fleet.actions == []

        await pilot.press("r")
        await until(lambda: isinstance(console.screen, ConfirmScreen))
        await pilot.press("y")
        await until(lambda: bool(console.actions_done))
        assert fleet.actions == [("reboot", AIR)]
        assert console.actions_done[-1].error is None


async def test_a_refused_command_shows_why(console: ConsoleApp, fleet: FakeFleet) -> None:
    fleet.broker = False
    async with console.run_test(size=SIZE) as pilot:
        await _open_from_boards(console, pilot, AIR)
        await pilot.press("l")
        await until(lambda: bool(console.actions_done))
        done = console.actions_done[-1]
        assert done.result is None
        assert done.error is not None
        assert "no broker" in done.error
        assert not isinstance(console.screen, LogScreen)


async def test_the_log_is_shown_in_a_dialog(console: ConsoleApp, fleet: FakeFleet) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await _open_from_boards(console, pilot, AIR)
        await pilot.press("l")
        await until(lambda: isinstance(console.screen, LogScreen))
        text = console.screen.query_one("#log-text", Static).content
        assert "board b-00003 · known to its gateway: True" in str(text)
        await pilot.press("escape")
        await until(lambda: isinstance(console.screen, BoardScreen))


async def test_tag_takes_plus_and_minus_words(console: ConsoleApp, fleet: FakeFleet) -> None:
    async with console.run_test(size=SIZE) as pilot:
        screen = await _open_from_boards(console, pilot, "b-00005")  # tags south, pilot
        await pilot.press("t")
        await until(lambda: isinstance(console.screen, TagScreen))
        console.screen.query_one(Input).value = "+flooded -pilot"
        await pilot.press("enter")
        await until(lambda: bool(fleet.actions))
        assert fleet.actions == [("tag", "b-00005", ("flooded",), ("pilot",))]
        await until(lambda: "tags flooded, south" in _text(screen, "#board-header").plain)

        # A malformed edit is refused before it reaches the fleet.
        await pilot.press("t")
        await until(lambda: isinstance(console.screen, TagScreen))
        console.screen.query_one(Input).value = "+a -a"
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert len(fleet.actions) == 1


async def test_a_read_only_console_refuses_every_action_and_asks_nothing(
    fleet: FakeFleet,
) -> None:
    console = ConsoleApp(fleet, refresh_s=0.1, clock=lambda: NOW_MS, read_only=True)
    async with console.run_test(size=SIZE) as pilot:
        await _open_from_boards(console, pilot, AIR)
        for done, key in enumerate(("r", "x", "l"), start=1):
            await pilot.press(key)
            await until(lambda: len(console.actions_done) == done)  # noqa: B023 (awaited here)
            assert isinstance(console.screen, BoardScreen)  # no confirm dialog
        assert fleet.actions == []
        assert {done.error for done in console.actions_done} == {READ_ONLY_REFUSAL}
