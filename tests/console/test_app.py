"""The app: keys, the command palette, and input that never waits on the backend."""

from __future__ import annotations

import time

from textual.command import CommandList
from textual.widgets import HelpPanel

from fleet.console.app import ConsoleApp
from fleet.console.screens.boards import BoardsScreen
from fleet.console.screens.fleet import FleetScreen
from tests.console.conftest import SIZE
from tests.console.fakes import FakeFleet, until


async def test_question_mark_shows_the_keys_of_the_screen_in_view(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        await pilot.pause()
        await pilot.press("question_mark")
        await pilot.pause()
        panel = console.screen.query_one(HelpPanel)
        shown = {b.description for _, b, _enabled, _tip in panel.screen.active_bindings.values()}
        assert {"Sort by next column", "Reverse sort", "Filter", "Fleet"} <= shown
        assert panel.is_on_screen
        await pilot.press("question_mark")
        await pilot.pause()
        assert not console.screen.query(HelpPanel)


async def test_command_palette_opens_a_screen(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        assert isinstance(console.screen, FleetScreen)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"show boards")
        commands = console.screen.query_one(CommandList)
        await until(lambda: commands.option_count > 0 and commands.highlighted is not None)
        option = commands.get_option_at_index(commands.highlighted or 0)
        assert "Show Boards" in str(option.prompt)
        await pilot.press("enter")
        await until(lambda: isinstance(console.screen, BoardsScreen))
        assert console.current_mode == "boards"


async def test_a_stalled_backend_never_freezes_input(fleet: FakeFleet) -> None:
    app = ConsoleApp(fleet, refresh_s=0.02)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.snapshots_received > 0)
        await pilot.pause()
        fleet.stall_s = 5.0
        await until(fleet.stalling.is_set)
        try:
            screen = app.screen
            assert isinstance(screen, FleetScreen)
            gateway = screen.node("gateway", "s-1-gw-1")
            assert gateway is not None
            assert not gateway.is_expanded
            # The key as a terminal sends it (pilot.press also waits for repaints).
            started = time.monotonic()
            app.simulate_key("e")
            await until(lambda: gateway.is_expanded, within_s=0.5)
            assert time.monotonic() - started < 0.5
            # The key was handled while the worker was still inside the read.
            assert fleet.stalling.is_set()
            await pilot.press("b", "slash", *"air")
            boards = app.screen
            assert isinstance(boards, BoardsScreen)
            assert boards.filter_input.value == "air"
            assert fleet.stalling.is_set()
        finally:
            fleet.release()


async def test_the_backend_is_closed_when_the_app_ends(
    console: ConsoleApp, fleet: FakeFleet
) -> None:
    async with console.run_test(size=SIZE):
        await until(lambda: console.snapshots_received > 0)
    await until(lambda: fleet.closed)
