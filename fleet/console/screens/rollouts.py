"""The Rollouts screen: every rollout in a table, and for the one under the cursor its waves as
bars (confirmed green, failed red, pending dim), its thresholds, and why it halted, in red.

The rollouts are read in a thread worker whenever a snapshot comes (and after an action);
starting and aborting ask the operator first, saying what will happen, in numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Final

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import get_current_worker

from fleet.console.backend import FleetSnapshot
from fleet.console.health import seen_text
from fleet.console.operations import RolloutView, WaveView, target_text
from fleet.console.screens.base import FleetView, row_under_cursor
from fleet.console.screens.start_rollout import StartRolloutScreen, start_consequence
from fleet.console.view import BackendFailed, ViewContext
from fleet.operations import RolloutRequest

#: Colours of a rollout's state.
STATE_STYLES: Final = {
    "running": "bold green",
    "paused": "yellow",
    "halted": "bold red",
    "aborted": "magenta",
    "done": "dim",
}
BAR_WIDTH: Final = 30


@dataclass
class RolloutsLoaded(Message):
    """A worker read the rollouts."""

    rollouts: tuple[RolloutView, ...]


def wave_bar(wave: WaveView, width: int = BAR_WIDTH) -> Text:
    """``███░░``: confirmed (and reverted) green, failed red, pending dim, ``width`` cells."""
    if not wave.boards:
        return Text("·" * width, style="dim")
    done = round(width * (wave.confirmed + wave.reverted) / wave.boards)
    failed = round(width * wave.failed / wave.boards)
    if wave.failed and not failed:
        failed = 1  # one failure is never invisible
    done = min(done, width - failed)
    return Text.assemble(
        ("█" * done, "green"), ("█" * failed, "red"), ("░" * (width - done - failed), "dim")
    )


def wave_line(wave: WaveView, current: int | None) -> Text:
    """A wave's bar and counts: ``canary ███░ 2/2 confirmed · 0 failed · 0 pending``."""
    name = "canary" if wave.index == 0 else f"wave {wave.index}"
    marker = "▶ " if wave.index == current else "  "
    line = Text.assemble(marker, (f"{name:<8}", "bold" if wave.index == current else ""), " ")
    line.append_text(wave_bar(wave))
    line.append(f" {wave.confirmed}/{wave.boards} confirmed · ")
    line.append(f"{wave.failed} failed", style="bold red" if wave.failed else "")
    if wave.reverted:
        line.append(f" · {wave.reverted} reverted", style="magenta")
    line.append(f" · {wave.pending} pending · soak {wave.soak_s} s")
    return line


def rollout_detail(rollout: RolloutView, now_ms: int) -> Text:
    """The selected rollout: its state, target, thresholds, waves and any halt, as text."""
    limits = rollout.limits
    text = Text.assemble(
        (rollout.rollout_id, "bold"),
        f" · release {rollout.release} · ",
        (rollout.state, STATE_STYLES.get(rollout.state, "")),
        f" · {target_text(rollout.target)} · started by {rollout.operator},"
        f" updated {seen_text(rollout.updated_ms, now_ms)}\n",
    )
    revert = (
        f"a halt or abort takes boards that took it to release {rollout.revert}"
        + (f" (a copy of {rollout.revert_from})" if rollout.revert_from else "")
        if rollout.revert
        else "no revert release: boards keep what they run on a halt or abort"
    )
    text.append(
        f"halts when more than {limits.failures:.0%} of a wave fails · confirm within"
        f" {limits.confirm_s} s · silent after {limits.silent_s} s · {limits.reboots} reboots\n"
        f"{revert}\n",
        style="dim",
    )
    if rollout.halt is not None:
        text.append(f"HALTED: {rollout.halt.summary}\n", style="bold red")
        text.append(f"  {rollout.halt.reason}\n", style="red")
    elif rollout.reason:
        text.append(f"{rollout.reason}\n", style="italic")
    for wave in rollout.waves:
        text.append_text(wave_line(wave, rollout.current_wave))
        text.append("\n")
    return text


def abort_consequence(rollout: RolloutView) -> str:
    """What an abort does, in numbers, for the confirm dialog."""
    stays = rollout.boards - rollout.took
    if not rollout.revert:
        return (
            f"Rollout {rollout.rollout_id} stops; no revert release is held, so all"
            f" {rollout.boards} boards keep what they run."
        )
    back = rollout.revert_from or rollout.revert
    return (
        f"Rollout {rollout.rollout_id} stops; the {rollout.took} boards that took release"
        f" {rollout.release} go back to release {back}; the other {stays} keep what they run."
    )


def resume_consequence(rollout: RolloutView) -> str:
    halt = rollout.halt.summary if rollout.halt else rollout.reason or "halted"
    return (
        f"Rollout {rollout.rollout_id} halted ({halt}). Resuming starts its next waves anyway:"
        " do it only once the cause is understood."
    )


def rollout_cells(rollout: RolloutView) -> tuple[str | Text, ...]:
    current = "-" if rollout.current_wave is None else str(rollout.current_wave)
    return (
        rollout.rollout_id,
        str(rollout.release),
        Text(rollout.state, style=STATE_STYLES.get(rollout.state, "")),
        f"{current} of {len(rollout.waves)}",
        f"{rollout.confirmed}/{rollout.boards}",
        target_text(rollout.target),
    )


class RolloutsScreen(FleetView):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "start", "Start a rollout"),
        Binding("p", "pause", "Pause"),
        Binding("r", "resume", "Resume"),
        Binding("x", "abort", "Abort"),
    ]

    def __init__(self, context: ViewContext) -> None:
        super().__init__(context)
        self.table: DataTable[str | Text] = DataTable(id="rollouts-table", cursor_type="row")
        for key, title in (
            ("rollout", "Rollout"),
            ("release", "Release"),
            ("state", "State"),
            ("wave", "Wave"),
            ("confirmed", "Confirmed"),
            ("target", "Target"),
        ):
            self.table.add_column(title, key=key)
        self.detail = Static("Reading the rollouts…", id="rollout-detail")
        #: What the detail pane shows (for tests: the widget renders it as Content).
        self.detail_text = Text()
        self.rollouts: dict[str, RolloutView] = {}
        #: Whether a read came back yet (tests wait for it).
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield self.table
        yield self.detail
        yield Footer()

    def on_mount(self) -> None:
        self.table.focus()

    @property
    def selected(self) -> RolloutView | None:
        """The rollout under the cursor (``None``: there is none)."""
        return self.rollouts.get(row_under_cursor(self.table))

    def select(self, rollout_id: str) -> None:
        self.table.move_cursor(row=self.table.get_row_index(rollout_id), animate=False)

    def draw(self, snapshot: FleetSnapshot) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="rollouts", exit_on_error=False)
    def load(self) -> None:
        try:
            found = self.context.backend.rollouts()
        # A failed read is the app's to report; the next snapshot reads again.
        except Exception as exc:
            self.post_message(BackendFailed(f"{type(exc).__name__}: {exc}"))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(RolloutsLoaded(found))

    def on_rollouts_loaded(self, message: RolloutsLoaded) -> None:
        self.show(message.rollouts)

    def show(self, rollouts: Sequence[RolloutView]) -> None:
        """Make the table hold ``rollouts`` (newest first), the cursor kept on its rollout."""
        table = self.table
        chosen = self.selected
        wanted = {r.rollout_id: r for r in reversed(rollouts)}
        if list(wanted) != list(self.rollouts):
            table.clear()
            for rollout_id, rollout in wanted.items():
                table.add_row(*rollout_cells(rollout), key=rollout_id)
        else:
            for rollout_id, rollout in wanted.items():
                if self.rollouts[rollout_id] != rollout:
                    for column, cell in zip(table.columns, rollout_cells(rollout), strict=True):
                        table.update_cell(rollout_id, column, cell, update_width=True)
        self.rollouts = wanted
        if chosen is not None and chosen.rollout_id in wanted:
            self.select(chosen.rollout_id)
        self.loaded = True
        self._show_detail()

    def _show_detail(self) -> None:
        rollout = self.selected
        if rollout is None:
            self.detail_text = Text("No rollout yet: n starts one.")
        else:
            self.detail_text = rollout_detail(rollout, self.context.now_ms())
        self.detail.update(self.detail_text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _chosen(self, verb: str) -> RolloutView | None:
        rollout = self.selected
        if rollout is None:
            self.notify(f"No rollout to {verb}: pick one in the table.", severity="warning")
        return rollout

    def action_start(self) -> None:
        latest = self.context.latest()
        sites = tuple(s.site_id for s in latest.sites) if latest else ()

        def chosen(request: RolloutRequest | None) -> None:
            if request is None:
                return
            backend = self.context.backend
            self.context.act(
                "Start rollout",
                lambda: backend.start_rollout(request),
                confirm=(
                    f"Start a rollout of release {request.release}?",
                    start_consequence(request, latest),
                ),
            )

        releases = latest.releases if latest else ()
        self.app.push_screen(StartRolloutScreen(sites, releases), callback=chosen)

    def action_pause(self) -> None:
        rollout = self._chosen("pause")
        if rollout is not None:
            backend, rollout_id = self.context.backend, rollout.rollout_id
            self.context.act("Pause rollout", lambda: backend.pause_rollout(rollout_id))

    def action_resume(self) -> None:
        rollout = self._chosen("resume")
        if rollout is None:
            return
        backend, rollout_id = self.context.backend, rollout.rollout_id
        confirm = None
        if rollout.state == "halted":
            confirm = (f"Resume halted rollout {rollout_id}?", resume_consequence(rollout))
        self.context.act(
            "Resume rollout", lambda: backend.resume_rollout(rollout_id), confirm=confirm
        )

    def action_abort(self) -> None:
        rollout = self._chosen("abort")
        if rollout is None:
            return
        backend, rollout_id = self.context.backend, rollout.rollout_id
        self.context.act(
            "Abort rollout",
            lambda: backend.abort_rollout(rollout_id),
            confirm=(f"Abort rollout {rollout_id}?", abort_consequence(rollout)),
        )
