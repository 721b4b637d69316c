"""The Audit screen: newest first, filtered as you type, the chain's verdict in a line."""

from __future__ import annotations

from textual.pilot import Pilot

from fleet.console.app import ConsoleApp
from fleet.console.screens.audit import AuditScreen
from tests.console.conftest import SIZE
from tests.console.fakes import NOW_MS, FakeFleet, until


async def _open_audit(app: ConsoleApp, pilot: Pilot[None]) -> AuditScreen:
    await until(lambda: app.snapshots_received > 0)
    await pilot.press("u")
    await until(lambda: isinstance(app.screen, AuditScreen) and app.screen.audit is not None)
    screen = app.screen
    assert isinstance(screen, AuditScreen)
    return screen


async def test_the_log_is_newest_first_and_its_chain_verifies(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        screen = await _open_audit(console, pilot)
        assert screen.shown_seqs == [6, 5, 4, 3, 2, 1]
        assert str(screen.chain.render()) == "✔ hash chain verifies · 6 of 6 entries"


async def test_typing_filters_the_log(fleet: FakeFleet) -> None:
    # One snapshot only: what the table shows after a key comes from the key, not a poll.
    console = ConsoleApp(fleet, refresh_s=600, clock=lambda: NOW_MS)
    async with console.run_test(size=SIZE) as pilot:
        screen = await _open_audit(console, pilot)
        await pilot.press("slash", *"rollout")
        await until(lambda: screen.shown_seqs == [5, 4])
        await pilot.press("space", *"siti")
        await until(lambda: screen.shown_seqs == [4])
        assert "1 of 6 entries" in str(screen.chain.render())
        await pilot.press("escape", "slash", *"error")  # results too
        await until(lambda: screen.shown_seqs == [5])
        await pilot.press("escape")
        await until(lambda: screen.shown_seqs == [6, 5, 4, 3, 2, 1])


async def test_a_broken_chain_is_said(console: ConsoleApp, fleet: FakeFleet) -> None:
    fleet.audit_intact = False
    async with console.run_test(size=SIZE) as pilot:
        screen = await _open_audit(console, pilot)
        line = str(screen.chain.render())
        assert line.startswith("✘ hash chain does not verify: entry 3 was edited")
