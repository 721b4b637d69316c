"""The Rollouts screen: waves and halts shown; start, pause, resume and abort, confirmed first
where they cannot be taken back."""

from __future__ import annotations

from rich.text import Text
from textual.command import CommandList
from textual.pilot import Pilot
from textual.widgets import Input, Static

from fleet.console.app import ConsoleApp
from fleet.console.screens.confirm import ConfirmScreen
from fleet.console.screens.rollouts import RolloutsScreen
from fleet.console.screens.start_rollout import StartRolloutScreen
from fleet.operations import RolloutRequest
from fleet.rollouts import Target, WaveSpec
from gateway.control.messages import Limits
from tests.console.conftest import SIZE
from tests.console.fakes import FakeFleet, until


async def _open_rollouts(app: ConsoleApp, pilot: Pilot[None], rollout_id: str) -> RolloutsScreen:
    await until(lambda: app.snapshots_received > 0)
    await pilot.press("o")
    await until(lambda: isinstance(app.screen, RolloutsScreen) and app.screen.loaded)
    screen = app.screen
    assert isinstance(screen, RolloutsScreen)
    screen.select(rollout_id)
    await pilot.pause()
    return screen


def _consequence(app: ConsoleApp) -> str:
    assert isinstance(app.screen, ConfirmScreen)
    return str(app.screen.query_one("#confirm-consequence", Static).render())


def _detail(screen: RolloutsScreen) -> Text:
    return screen.detail_text


async def test_the_selected_rollout_shows_its_waves_progress(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        screen = await _open_rollouts(console, pilot, "r7-abc123")
        detail = _detail(screen).plain
        assert "r7-abc123 · release 7 · running · site s-0" in detail
        assert "halts when more than 10% of a wave fails" in detail
        assert "wave 1   ██████████████████████████████ 10/10 confirmed · 0 failed" in detail
        assert "▶ wave 2   ░░░" in detail
        assert "0/8 confirmed · 0 failed · 8 pending" in detail


async def test_a_halted_rollout_shows_its_rule_boards_and_numbers_in_red(
    console: ConsoleApp,
) -> None:
    async with console.run_test(size=SIZE) as pilot:
        screen = await _open_rollouts(console, pilot, "r5-2c2c2c")
        detail = _detail(screen)
        line = "HALTED: wave 1: 2 of 8 boards failed, more than the 10% allowed (b-00024, b-00027)"
        assert line in detail.plain
        start = detail.plain.index(line)
        assert any(
            "red" in str(span.style) and span.start <= start < span.end for span in detail.spans
        )
        assert "b-00024 (rejected: bad signature)" in detail.plain


async def test_the_start_form_names_the_releases_held_and_offers_the_newest(
    console: ConsoleApp,
) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await _open_rollouts(console, pilot, "r7-abc123")
        await pilot.press("n")
        await until(lambda: isinstance(console.screen, StartRolloutScreen))
        form = console.screen
        assert form.query_one("#start-release", Input).value == "4"
        held = str(form.query_one("#start-releases", Static).render())
        assert held == "Releases held (seq, version): 4 (1.4.0), 3 (1.3.2)"
        # The example target names this fleet's sites, not made-up ones.
        assert "site s-0,s-1" in str(form.query_one("#start-hint", Static).render())


async def test_start_goes_from_the_form_through_confirmation_to_the_backend(
    console: ConsoleApp, fleet: FakeFleet
) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await _open_rollouts(console, pilot, "r7-abc123")
        await pilot.press("n")
        await until(lambda: isinstance(console.screen, StartRolloutScreen))
        form = console.screen
        for name, value in {
            "release": "8",
            "target": "kind air",
            "canary": "2",
            "waves": "25,100",
            "soak": "3600,600",
            "failures": "10",
        }.items():
            form.query_one(f"#start-{name}", Input).value = value
        await pilot.press("enter")
        await until(lambda: isinstance(console.screen, ConfirmScreen))
        # 14 of the 40 boards are air boards; none runs release 8.
        assert _consequence(console).startswith(
            "Release 8 goes to 14 boards (those not running it yet): first 2 canary boards,"
            " then waves up to 25%, 100% of the rest, each soaking 3600, 600 s."
            " It halts when more than 10% of a wave's boards fail."
        )
        await pilot.press("y")
        await until(lambda: len(console.actions_done) == 1)
        assert fleet.calls == [
            (
                "start",
                RolloutRequest(
                    release=8,
                    target=Target(kinds=("air",)),
                    waves=WaveSpec(canary=2, percents=(25, 100), soak_s=(3600, 600)),
                    limits=Limits(0.1, 3600, 1800, 3),
                ),
            )
        ]
        assert console.actions_done[0].error is None


async def test_the_start_form_refuses_what_is_wrong_and_says_why(
    console: ConsoleApp, fleet: FakeFleet
) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await _open_rollouts(console, pilot, "r7-abc123")
        await pilot.press("n")
        await until(lambda: isinstance(console.screen, StartRolloutScreen))
        form = console.screen
        error = form.query_one("#start-error", Static)
        cases = {
            ("release", "seven"): "release: a whole number, not 'seven'",
            ("target", "everything"): "target: write all, or site/kind/tag/boards",
            ("waves", "25,50"): "waves: wave percentages end at 100",
            ("failures", "150"): "failures: a percentage, 0 to 100",
        }
        valid = {"release": "8", "target": "all", "waves": "100", "failures": "0"}
        for (name, value), message in cases.items():
            for field, good in valid.items():
                form.query_one(f"#start-{field}", Input).value = good
            form.query_one(f"#start-{name}", Input).value = value
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(console.screen, StartRolloutScreen)
            assert str(error.render()).startswith(message)
        await pilot.press("escape")
        await until(lambda: isinstance(console.screen, RolloutsScreen))
        assert fleet.calls == []


async def test_all_targets_every_site(console: ConsoleApp, fleet: FakeFleet) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await _open_rollouts(console, pilot, "r7-abc123")
        await pilot.press("n")
        await until(lambda: isinstance(console.screen, StartRolloutScreen))
        console.screen.query_one("#start-release", Input).value = "8"
        console.screen.query_one("#start-target", Input).value = "all"
        await pilot.press("enter")
        await until(lambda: isinstance(console.screen, ConfirmScreen))
        assert "goes to 40 boards" in _consequence(console)
        await pilot.press("y")
        await until(lambda: bool(fleet.calls))
        request = fleet.calls[0][1]
        assert isinstance(request, RolloutRequest)
        assert request.target == Target(sites=("s-0", "s-1"))


async def test_pause_then_resume_the_selected_rollout(
    console: ConsoleApp, fleet: FakeFleet
) -> None:
    async with console.run_test(size=SIZE) as pilot:
        screen = await _open_rollouts(console, pilot, "r7-abc123")
        await pilot.press("p")
        await until(lambda: screen.rollouts["r7-abc123"].state == "paused")
        assert fleet.calls == [("pause", "r7-abc123")]
        assert "pause by tester" in _detail(screen).plain
        await pilot.press("r")  # a paused rollout resumes without a question
        await until(lambda: screen.rollouts["r7-abc123"].state == "running")
        assert fleet.calls[-1] == ("resume", "r7-abc123")
        # Pausing what is not running is refused, and the refusal reported.
        screen.select("r3-0a0a0a")
        await pilot.press("p")
        await until(lambda: len(console.actions_done) == 3)
        assert console.actions_done[-1].error == "rollout r3-0a0a0a is done: it cannot pause"


async def test_abort_says_what_will_happen_and_n_does_nothing(
    console: ConsoleApp, fleet: FakeFleet
) -> None:
    async with console.run_test(size=SIZE) as pilot:
        screen = await _open_rollouts(console, pilot, "r7-abc123")
        await pilot.press("x")
        await until(lambda: isinstance(console.screen, ConfirmScreen))
        assert _consequence(console) == (
            "Rollout r7-abc123 stops; the 12 boards that took release 7 go back to release 6;"
            " the other 8 keep what they run."
        )
        await pilot.press("n")
        await until(lambda: isinstance(console.screen, RolloutsScreen))
        await pilot.pause(0.2)
        assert fleet.calls == []
        assert screen.rollouts["r7-abc123"].state == "running"
        await pilot.press("x")
        await until(lambda: isinstance(console.screen, ConfirmScreen))
        await pilot.press("y")
        await until(lambda: screen.rollouts["r7-abc123"].state == "aborted")
        assert fleet.calls == [("abort", "r7-abc123")]


async def test_resuming_a_halted_rollout_asks_first(console: ConsoleApp, fleet: FakeFleet) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await _open_rollouts(console, pilot, "r5-2c2c2c")
        await pilot.press("r")
        await until(lambda: isinstance(console.screen, ConfirmScreen))
        assert "Resuming starts its next waves anyway" in _consequence(console)
        await pilot.press("n")
        await pilot.pause(0.2)
        assert fleet.calls == []


async def test_the_palette_aborts_the_selected_rollout(
    console: ConsoleApp, fleet: FakeFleet
) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await _open_rollouts(console, pilot, "r4-1b1b1b")
        await pilot.press("f")
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"abort the selected")
        commands = console.screen.query_one(CommandList)
        await until(lambda: commands.option_count > 0 and commands.highlighted is not None)
        await pilot.press("enter")
        await until(lambda: isinstance(console.screen, ConfirmScreen))
        assert _consequence(console).startswith("Rollout r4-1b1b1b stops; the 1 boards")
        await pilot.press("y")
        await until(lambda: bool(fleet.calls))
        assert fleet.calls == [("abort", "r4-1b1b1b")]
