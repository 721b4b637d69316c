"""The Alerts screen: open alerts first, coloured by severity; acknowledging needs a note."""

from __future__ import annotations

from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Static

from fleet.console.app import ConsoleApp
from fleet.console.screens.alerts import AlertsScreen
from fleet.console.screens.note import NoteScreen
from tests.console.conftest import SIZE
from tests.console.fakes import FakeFleet, until


async def _open_alerts(app: ConsoleApp, pilot: Pilot[None]) -> AlertsScreen:
    await until(lambda: app.snapshots_received > 0)
    await pilot.press("a")
    await until(lambda: isinstance(app.screen, AlertsScreen) and app.screen.loaded)
    screen = app.screen
    assert isinstance(screen, AlertsScreen)
    return screen


async def test_open_alerts_come_first_critical_in_red(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        screen = await _open_alerts(console, pilot)
        # 42 critical and open, 41 a warning (acknowledged), 40 cleared.
        assert screen.shown_alerts == [42, 41, 40]
        severity = screen.table.get_cell("42", "severity")
        assert isinstance(severity, Text)
        assert "red" in str(severity.style)
        assert screen.table.get_cell("41", "status") == "acked by ana"
        assert screen.table.get_cell("40", "status") == "cleared"
        assert "2 open (1 critical) · 1 cleared lately" in str(screen.count_line.render())


async def test_acknowledging_an_alert_with_a_note(console: ConsoleApp, fleet: FakeFleet) -> None:
    async with console.run_test(size=SIZE) as pilot:
        screen = await _open_alerts(console, pilot)
        screen.select(42)
        await pilot.press("k")
        await until(lambda: isinstance(console.screen, NoteScreen))
        await pilot.press(*"uplink checked", "enter")
        await until(lambda: screen.table.get_cell("42", "status") == "acked by tester")
        assert fleet.calls == [("ack", (42, "uplink checked"))]
        assert "acknowledged by tester" in str(screen.detail.render())


async def test_an_empty_note_is_refused(console: ConsoleApp, fleet: FakeFleet) -> None:
    async with console.run_test(size=SIZE) as pilot:
        screen = await _open_alerts(console, pilot)
        screen.select(42)
        await pilot.press("k")
        await until(lambda: isinstance(console.screen, NoteScreen))
        await pilot.press("space", "enter")
        await pilot.pause()
        assert isinstance(console.screen, NoteScreen)
        error = console.screen.query_one("#note-error", Static)
        assert "A note is needed" in str(error.render())
        await pilot.press("escape")
        await until(lambda: isinstance(console.screen, AlertsScreen))
        assert fleet.calls == []


async def test_a_cleared_alert_is_not_acknowledged(console: ConsoleApp, fleet: FakeFleet) -> None:
    async with console.run_test(size=SIZE) as pilot:
        screen = await _open_alerts(console, pilot)
        screen.select(40)
        await pilot.press("k")
        await pilot.pause()
        assert console.screen is screen
        assert fleet.calls == []
