"""Snapshots of every console screen: each test drives the app to a state, renders it to SVG
at :data:`SIZE` and compares the frame with the one stored in ``__snapshots__/``, so any
change in what the operator sees fails here.

After a change meant to show: run

    pytest tests/console/test_snapshots.py --snapshot-update

and commit the new SVGs. Review a difference first: a failing run writes
``snapshot_report.html`` (``--snapshot-report PATH`` to put it elsewhere), which shows the
stored frame and the new one side by side.

Nothing in a frame may vary between runs: the app reads the fleet once (``refresh_s`` of an
hour) from :class:`FakeFleet` at the fixed :data:`NOW_MS`, every Input's cursor is steady
(conftest), the Header has no clock, and each test waits until the screen has drawn the
data its thread worker read before the frame is taken.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import pytest
from textual.app import App
from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import HelpPanel

from fleet.console.app import ConsoleApp
from fleet.console.screens.alerts import AlertsScreen
from fleet.console.screens.audit import AuditScreen
from fleet.console.screens.board import BoardScreen, SeriesRow
from fleet.console.screens.boards import BoardsScreen
from fleet.console.screens.confirm import ConfirmScreen
from fleet.console.screens.fleet import FleetScreen
from fleet.console.screens.rollouts import RolloutsScreen
from tests.console.conftest import SIZE
from tests.console.fakes import NOW_MS, FakeFleet, until

RunBefore = Callable[[Pilot[None]], Awaitable[None]]
S = TypeVar("S", bound=Screen[Any])

# make_fleet's kinds go air, water, bin by index; b-00000 is never seen, b-00001 stale.
AIR, WATER = "b-00003", "b-00004"


class SnapCompare(Protocol):
    """pytest-textual-snapshot's ``snap_compare`` fixture, as these tests call it."""

    def __call__(
        self, app: App[Any], *, terminal_size: tuple[int, int], run_before: RunBefore
    ) -> bool: ...


@pytest.fixture
def app(fleet: FakeFleet) -> ConsoleApp:
    """The app over the fake fleet at the fixed time; it reads the fleet once."""
    return ConsoleApp(fleet, refresh_s=3600, clock=lambda: NOW_MS)


def _screen(app: App[Any], kind: type[S]) -> S:
    screen = app.screen
    assert isinstance(screen, kind)
    return screen


async def _show(pilot: Pilot[None], key: str, kind: type[S], ready: Callable[[S], bool]) -> S:
    """Press ``key`` once the fleet is read, and wait until its screen shows its data."""
    app = pilot.app
    await until(lambda: isinstance(app, ConsoleApp) and app.snapshots_received > 0)
    await pilot.press(key)
    await until(lambda: isinstance(app.screen, kind) and ready(app.screen))
    return _screen(app, kind)


async def _rollout_selected(pilot: Pilot[None], rollout_id: str) -> RolloutsScreen:
    screen = await _show(pilot, "o", RolloutsScreen, lambda s: s.loaded)
    screen.select(rollout_id)
    await until(lambda: (chosen := screen.selected) is not None and chosen.rollout_id == rollout_id)
    return screen


async def _board_open(pilot: Pilot[None], board_id: str, rows: int) -> None:
    """Open ``board_id`` and wait for its detail and its ``rows`` sparklines."""
    app = pilot.app
    assert isinstance(app, ConsoleApp)
    await until(lambda: app.snapshots_received > 0)
    app.open_board(board_id)
    await until(
        lambda: (
            isinstance(app.screen, BoardScreen)
            and app.screen.detail is not None
            and len(app.screen.query(SeriesRow)) == rows
        )
    )


# --- Fleet -----------------------------------------------------------------------------------


def test_fleet_tree_with_a_gateway_expanded(snap_compare: SnapCompare, app: ConsoleApp) -> None:
    """Sites expanded, s-0-gw-0 expanded to its boards (never seen, stale, downloading), the
    other gateways closed; the summary bar above."""

    async def run_before(pilot: Pilot[None]) -> None:
        await until(lambda: app.snapshots_received > 0)
        screen = _screen(app, FleetScreen)
        await until(lambda: screen.node("gateway", "s-0-gw-0") is not None)
        gateway = screen.node("gateway", "s-0-gw-0")
        assert gateway is not None
        gateway.expand()
        await until(lambda: screen.node("board", "b-00009") is not None)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


# --- Boards ----------------------------------------------------------------------------------


async def _boards_by_battery(pilot: Pilot[None]) -> BoardsScreen:
    screen = await _show(pilot, "b", BoardsScreen, lambda s: s.table.row_count > 0)
    while screen.sort_column != "battery":
        await pilot.press("s")
    return screen


def test_boards_sorted_by_battery(snap_compare: SnapCompare, app: ConsoleApp) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await _boards_by_battery(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_boards_sorted_then_filtered(snap_compare: SnapCompare, app: ConsoleApp) -> None:
    """Water boards tagged north, still by battery; the filter's cursor after the text."""

    async def run_before(pilot: Pilot[None]) -> None:
        screen = await _boards_by_battery(pilot)
        await pilot.press("slash", *"water north")
        # Water is every 3rd board from 1, north every 2nd from 0: 4, 10, ..., 34.
        await until(lambda: screen.table.row_count == 6)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


# --- Board -----------------------------------------------------------------------------------


def test_board_air_with_its_ispu(snap_compare: SnapCompare, app: ConsoleApp) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await _board_open(pilot, AIR, rows=4 + 4)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_board_water_at_siaga_iii(
    snap_compare: SnapCompare, app: ConsoleApp, fleet: FakeFleet
) -> None:
    fleet.levels[WATER] = {"level": 2.2}  # Siaga III from 2.0 m, Siaga II at 2.5 m

    async def run_before(pilot: Pilot[None]) -> None:
        await _board_open(pilot, WATER, rows=1 + 4)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


# --- Rollouts, the abort's confirmation, the keys panel --------------------------------------


def test_rollouts_running_selected(snap_compare: SnapCompare, app: ConsoleApp) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await _rollout_selected(pilot, "r7-abc123")

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_rollouts_halted_selected_with_its_reason(
    snap_compare: SnapCompare, app: ConsoleApp
) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await _rollout_selected(pilot, "r5-2c2c2c")

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_abort_asks_first(snap_compare: SnapCompare, app: ConsoleApp) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await _rollout_selected(pilot, "r7-abc123")
        await pilot.press("x")
        await until(lambda: isinstance(app.screen, ConfirmScreen))

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_keys_panel_of_rollouts(snap_compare: SnapCompare, app: ConsoleApp) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        screen = await _rollout_selected(pilot, "r7-abc123")
        await pilot.press("question_mark")
        await until(lambda: len(screen.query(HelpPanel)) == 1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


# --- Alerts, Audit, the palette --------------------------------------------------------------


def test_alerts(snap_compare: SnapCompare, app: ConsoleApp) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await _show(pilot, "a", AlertsScreen, lambda s: s.loaded)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_audit(snap_compare: SnapCompare, app: ConsoleApp) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await _show(pilot, "u", AuditScreen, lambda s: s.audit is not None)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_palette_finds_boards(snap_compare: SnapCompare, app: ConsoleApp) -> None:
    """``b-0000`` matches only BoardCommands' entries: hits of equal score from several
    providers would come in the order the providers happened to answer."""

    async def run_before(pilot: Pilot[None]) -> None:
        await _show(pilot, "o", RolloutsScreen, lambda s: s.loaded)
        await pilot.press("ctrl+p")
        await until(lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"b-0000")
        palette = _screen(app, CommandPalette)
        # Fuzzy: every id with four zeros after the dash, b-00000..b-00009, b-00010..30.
        await until(lambda: palette.query_one(CommandList).option_count == 13)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
