"""The console app: polls its backend in a thread worker and hands each snapshot, as a
message, to the screen in view. Nothing on the UI thread waits on the backend.

Screens are modes (``fleet``, ``boards``, ``rollouts``, ``alerts``, ``audit``), reached by a
key, the command palette (``ctrl+p``) or :class:`ScreenCommands`; the operator's actions are
in the palette too (:class:`ActionCommands`); ``?`` toggles the keys of the screen in view. A
board's screen is pushed over the mode it was opened from (Enter on a board, or "Open
board" in the palette: :class:`BoardCommands`), and ``escape`` goes back.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import ClassVar, Final

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.css.query import NoMatches
from textual.widgets import HelpPanel

from fleet.console.backend import FleetBackend, FleetSnapshot
from fleet.console.health import DEFAULT_STALE_AFTER_MS
from fleet.console.screens.alerts import AlertsScreen
from fleet.console.screens.audit import AuditScreen
from fleet.console.screens.board import BoardScreen
from fleet.console.screens.boards import BoardsScreen
from fleet.console.screens.confirm import ConfirmScreen
from fleet.console.screens.fleet import FleetScreen
from fleet.console.screens.rollouts import RolloutsScreen
from fleet.console.view import (
    ActionDone,
    BackendFailed,
    SnapshotReady,
    SnapshotView,
    ViewContext,
)
from fleet.store import now_ms

READ_ONLY_REFUSAL: Final = (
    "this console is read-only: act from a console in a terminal ('simpul fleet')"
)


@dataclass(frozen=True, slots=True)
class ScreenEntry:
    mode: str
    title: str
    help: str


#: The console's screens, in the order keys and the palette list them.
SCREENS: tuple[ScreenEntry, ...] = (
    ScreenEntry("fleet", "Fleet", "sites, gateways and boards as a tree, with their health"),
    ScreenEntry("boards", "Boards", "every board in a table: sort, filter as you type"),
    ScreenEntry("rollouts", "Rollouts", "rollouts and their waves: start, pause, resume, abort"),
    ScreenEntry("alerts", "Alerts", "open alerts, then those cleared lately: acknowledge"),
    ScreenEntry("audit", "Audit", "the operators' audit log, filtered, its hash chain checked"),
)


@dataclass(frozen=True, slots=True)
class ActionEntry:
    """An action of a screen the palette offers: it shows ``mode`` and runs ``action``."""

    title: str
    mode: str
    action: str
    help: str


#: The operators' actions in the palette, each run on its screen.
ACTIONS: tuple[ActionEntry, ...] = (
    ActionEntry("Start a rollout", "rollouts", "start", "release, target, waves, soak, threshold"),
    ActionEntry("Pause the selected rollout", "rollouts", "pause", "no new wave starts"),
    ActionEntry("Resume the selected rollout", "rollouts", "resume", "a paused or halted one"),
    ActionEntry("Abort the selected rollout", "rollouts", "abort", "boards that took it go back"),
    ActionEntry(
        "Acknowledge the selected alert", "alerts", "acknowledge", "with a note: what is done"
    ),
)


class ScreenCommands(Provider):
    """The command palette's entries that open a screen."""

    def _open(self, mode: str) -> None:
        self.app.switch_mode(mode)

    async def discover(self) -> Hits:
        for entry in SCREENS:
            yield DiscoveryHit(
                f"Show {entry.title}", partial(self._open, entry.mode), help=entry.help
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for entry in SCREENS:
            text = f"Show {entry.title}"
            score = matcher.match(text)
            if score > 0:
                yield Hit(
                    score, matcher.highlight(text), partial(self._open, entry.mode), help=entry.help
                )


class ActionCommands(Provider):
    """The command palette's entries for the operator's actions (:data:`ACTIONS`)."""

    def _run(self, entry: ActionEntry) -> Callable[[], Awaitable[None]]:
        app = self.app
        assert isinstance(app, ConsoleApp)
        return partial(app.run_screen_action, entry.mode, entry.action)

    async def discover(self) -> Hits:
        for entry in ACTIONS:
            yield DiscoveryHit(entry.title, self._run(entry), help=entry.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for entry in ACTIONS:
            score = matcher.match(entry.title)
            if score > 0:
                yield Hit(score, matcher.highlight(entry.title), self._run(entry), help=entry.help)


class BoardCommands(Provider):
    """The command palette's "Open board <id>" for every board of the latest snapshot."""

    def _boards(self) -> list[str]:
        app = self.app
        snapshot = app.snapshot if isinstance(app, ConsoleApp) else None
        return [] if snapshot is None else [b.board_id for b in snapshot.boards]

    def _open(self, board_id: str) -> None:
        app = self.app
        if isinstance(app, ConsoleApp):
            app.open_board(board_id)

    async def discover(self) -> Hits:
        # Only a hint: with thousands of boards, the list comes from what is typed.
        for board_id in self._boards()[:5]:
            yield DiscoveryHit(f"Open board {board_id}", partial(self._open, board_id))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for board_id in self._boards():
            text = f"Open board {board_id}"
            score = matcher.match(text)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(text),
                    partial(self._open, board_id),
                    help="its readings, health, rollouts and alerts; reboot, log, tag, retire",
                )


class ConsoleApp(App[None]):
    """The operator's console over ``backend``, read every ``refresh_s`` seconds.

    ``clock`` gives Unix ms (tests pass a fixed one); a board silent longer than
    ``stale_after_ms`` is drawn stale.
    """

    CSS_PATH = "app.tcss"
    TITLE = "simpul"
    SUB_TITLE = "fleet console"
    COMMANDS = App.COMMANDS | {ScreenCommands, ActionCommands, BoardCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "open_screen('fleet')", "Fleet"),
        Binding("b", "open_screen('boards')", "Boards"),
        Binding("o", "open_screen('rollouts')", "Rollouts"),
        Binding("a", "open_screen('alerts')", "Alerts"),
        Binding("u", "open_screen('audit')", "Audit"),
        Binding("question_mark", "toggle_keys", "Keys"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        backend: FleetBackend,
        *,
        refresh_s: float = 2.0,
        clock: Callable[[], int] = now_ms,
        stale_after_ms: int = DEFAULT_STALE_AFTER_MS,
        read_only: bool = False,
    ) -> None:
        super().__init__()
        #: A read-only console shows everything and refuses every action.
        self.read_only = read_only
        self.backend = backend
        self.refresh_s = refresh_s
        self.snapshot: FleetSnapshot | None = None
        #: Snapshots received, and the last read error (for the screens and tests).
        self.snapshots_received = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        #: Set to read the fleet now rather than at the next tick (after an action).
        self._wake = threading.Event()
        #: Results of actions, newest last (for tests).
        self.actions_done: list[ActionDone] = []
        context = ViewContext(
            clock, stale_after_ms, lambda: self.snapshot, backend, self.act, self.open_board
        )
        self.context = context
        self.add_mode("fleet", lambda: FleetScreen(context))
        self.add_mode("boards", lambda: BoardsScreen(context))
        self.add_mode("rollouts", lambda: RolloutsScreen(context))
        self.add_mode("alerts", lambda: AlertsScreen(context))
        self.add_mode("audit", lambda: AuditScreen(context))

    def on_mount(self) -> None:
        self.switch_mode("fleet")
        self.poll_backend()

    def on_unmount(self) -> None:
        self._stop.set()
        self._wake.set()

    @work(thread=True, exclusive=True, group="backend", exit_on_error=False)
    def poll_backend(self) -> None:
        """Read a snapshot every ``refresh_s``, in this thread, until the app ends."""
        try:
            while not self._stop.is_set():
                try:
                    snapshot = self.backend.snapshot()
                # Any failure of a read is reported and retried: the console outlives a
                # locked or briefly missing database.
                except Exception as exc:
                    self.post_message(BackendFailed(f"{type(exc).__name__}: {exc}"))
                else:
                    self.post_message(SnapshotReady(snapshot))
                self._wake.wait(self.refresh_s)
                self._wake.clear()
        finally:
            self.backend.close()

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        self.snapshot = message.snapshot
        self.snapshots_received += 1
        self.last_error = None
        # The stack is empty while the app shuts down; a last message may still arrive.
        stack = self.screen_stack
        if stack and isinstance(stack[-1], SnapshotView):
            stack[-1].show_snapshot(message.snapshot)

    def on_backend_failed(self, message: BackendFailed) -> None:
        if message.error != self.last_error:
            self.notify(message.error, title="Cannot read the fleet", severity="error")
        self.last_error = message.error

    def act(
        self, label: str, call: Callable[[], str], *, confirm: tuple[str, str] | None = None
    ) -> None:
        """Run ``call`` (an action of the backend) in a worker, after the operator confirms
        if ``confirm`` is given; its result or error is notified, and the fleet read again.
        A read-only console refuses, saying so, and ``call`` is never made."""
        if self.read_only:
            self.post_message(ActionDone(label, None, READ_ONLY_REFUSAL))
            return
        if confirm is None:
            self._run_action(label, call)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._run_action(label, call)

        self.push_screen(ConfirmScreen(*confirm), callback=answered)

    @work(thread=True, group="actions", exit_on_error=False)
    def _run_action(self, label: str, call: Callable[[], str]) -> None:
        try:
            result = call()
        # What the fleet refuses, or a failure to reach it, is the operator's to read.
        except Exception as exc:
            self.post_message(ActionDone(label, None, str(exc) or type(exc).__name__))
        else:
            self.post_message(ActionDone(label, result, None))
        self._wake.set()

    def on_action_done(self, message: ActionDone) -> None:
        self.actions_done.append(message)
        if message.error is None:
            self.notify(message.result or "done", title=message.label)
        else:
            self.notify(message.error, title=f"{message.label}: refused", severity="error")

    def open_board(self, board_id: str) -> None:
        """Show a board's screen over the screen in view."""
        self.push_screen(BoardScreen(self.context, board_id))

    def action_open_screen(self, mode: str) -> None:
        self.switch_mode(mode)

    async def run_screen_action(self, mode: str, action: str) -> None:
        """Show ``mode``'s screen and run its ``action`` there (the palette's actions)."""
        if self.current_mode != mode:
            await self.switch_mode(mode)
        await self.screen.run_action(action)

    def action_toggle_keys(self) -> None:
        try:
            self.screen.query_one(HelpPanel)
        except NoMatches:
            self.action_show_help_panel()
        else:
            self.action_hide_help_panel()
