"""The Fleet screen: the tree's counts and colours, the summary bar, updates in place."""

from __future__ import annotations

import dataclasses

from rich.text import Text
from textual.widgets import Static

from fleet.console.app import ConsoleApp
from fleet.console.screens.fleet import FleetScreen
from tests.console.conftest import SIZE
from tests.console.fakes import NOW_MS, FakeFleet, make_board, until


def _styles(label: str | Text) -> set[str]:
    assert isinstance(label, Text)
    return {str(span.style) for span in label.spans}


def _plain(label: str | Text) -> str:
    return label.plain if isinstance(label, Text) else label


def _fleet_screen(app: ConsoleApp) -> FleetScreen:
    screen = app.screen
    assert isinstance(screen, FleetScreen)
    return screen


async def test_tree_counts_boards_by_liveness_per_site_and_gateway(
    console: ConsoleApp, fleet: FakeFleet
) -> None:
    async with console.run_test(size=SIZE):
        await until(lambda: console.snapshots_received > 0)
        screen = _fleet_screen(console)
        # s-0 holds boards 0..19: 0 and 10 never seen, 1 and 11 stale.
        site = screen.node("site", "s-0")
        assert site is not None
        assert "16/20 online · 2 stale · 2 never seen" in _plain(site.label)
        gateway = screen.node("gateway", "s-0-gw-1")
        assert gateway is not None
        assert "8/10 online · 1 stale · 1 never seen · backlog 120" in _plain(gateway.label)
        assert screen.node("gateway", "s-1-gw-0") is not None


async def test_tree_colours_boards_online_stale_and_never_seen(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await until(lambda: console.snapshots_received > 0)
        screen = _fleet_screen(console)
        gateway = screen.node("gateway", "s-0-gw-0")
        assert gateway is not None
        assert screen.node("board", "b-00002") is None  # collapsed: no board nodes
        gateway.expand()
        await pilot.pause()
        colours = {}
        for board_id in ("b-00002", "b-00001", "b-00000"):
            node = screen.node("board", board_id)
            assert node is not None
            colours[board_id] = _styles(node.label)
        assert "green" in colours["b-00002"]
        assert "yellow" in colours["b-00001"]
        assert "bright_black" in colours["b-00000"]
        site = screen.node("site", "s-0")
        assert site is not None
        # A site with stale boards is drawn stale, not online.
        assert "yellow" in _styles(site.label)


async def test_summary_bar_counts_the_whole_fleet(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE):
        await until(lambda: console.snapshots_received > 0)
        summary = console.screen.query_one("#summary", Static)
        text = str(summary.render())
        assert "Boards online 32/40" in text
        assert "Alerts open 3" in text
        assert "Rollouts running 1" in text
        assert "Gateways with backlog 1" in text
        assert "Readings today 5184" in text


async def test_update_keeps_expansion_and_cursor_on_its_node(
    console: ConsoleApp, fleet: FakeFleet
) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await until(lambda: console.snapshots_received > 0)
        screen = _fleet_screen(console)
        tree = screen.fleet_tree
        first, second = screen.node("gateway", "s-0-gw-0"), screen.node("gateway", "s-0-gw-1")
        assert first is not None
        assert second is not None
        first.expand()
        second.expand()
        await pilot.pause()
        target = screen.node("board", "b-00013")
        assert target is not None
        tree.move_cursor(target)
        line = tree.cursor_line

        # A new board on the gateway above the cursor pushes its line down, and b-00013
        # goes stale.
        fleet.update_boards({"b-00013": {"last_seen_ms": NOW_MS - 7_200_000}})
        extra = make_board(99_999, "s-0", "s-0-gw-0")
        fleet.current = dataclasses.replace(fleet.current, boards=(*fleet.current.boards, extra))
        seen = console.snapshots_received
        await until(lambda: console.snapshots_received > seen + 1)
        await pilot.pause()

        assert tree.cursor_node is not None
        assert tree.cursor_node.data == ("board", "b-00013")
        assert tree.cursor_line == line + 1
        assert first.is_expanded
        assert second.is_expanded
        assert "stale" in _plain(target.label)
