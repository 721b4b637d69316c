"""The Alerts screen: open alerts first (critical, then oldest), coloured by severity, then the
ones cleared lately, dimmed; the alert under the cursor in full below. ``k`` acknowledges it
with a note.

The alerts are read in a thread worker whenever a snapshot comes (and after an action).
"""

from __future__ import annotations

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
from fleet.console.operations import AlertRow, AlertsView
from fleet.console.screens.base import FleetView, row_under_cursor
from fleet.console.screens.note import NoteScreen
from fleet.console.view import BackendFailed, ViewContext

#: Recently raised alerts read besides the open ones.
RECENT: Final = 100
SEVERITY_STYLES: Final = {"critical": "bold red", "warning": "yellow"}
Cells = tuple[str | Text, ...]


@dataclass
class AlertsLoaded(Message):
    """A worker read the alerts."""

    alerts: AlertsView


def alert_status(alert: AlertRow) -> str:
    if alert.state != "open":
        return "cleared"
    return f"acked by {alert.acked_by}" if alert.acked_by else "open"


def alert_cells(alert: AlertRow, now_ms: int) -> Cells:
    style = SEVERITY_STYLES.get(alert.severity, "") if alert.state == "open" else "dim"
    return (
        Text(alert.severity, style=style),
        Text(alert.rule, style="bold" if alert.state == "open" else "dim"),
        f"{alert.subject_kind} {alert.subject}",
        seen_text(alert.raised_ms, now_ms),
        alert_status(alert),
        " ".join(f"{k}={v}" for k, v in alert.detail),
    )


def alert_detail(alert: AlertRow, now_ms: int) -> Text:
    style = SEVERITY_STYLES.get(alert.severity, "")
    text = Text.assemble(
        (f"{alert.severity} ", style),
        (alert.rule, "bold"),
        f" on {alert.subject_kind} {alert.subject} · alert {alert.alert_id}"
        f" · raised {seen_text(alert.raised_ms, now_ms)}",
    )
    if alert.cleared_ms is not None:
        text.append(f" · cleared {seen_text(alert.cleared_ms, now_ms)}", style="dim")
    text.append("\n" + "  ".join(f"{k}: {v}" for k, v in alert.detail))
    if alert.acked_by:
        when = seen_text(alert.acked_ms, now_ms)
        text.append(f"\nacknowledged by {alert.acked_by} at {when}: {alert.note or ''}", "italic")
    return text


class AlertsScreen(FleetView):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("k", "acknowledge", "Acknowledge"),
    ]

    def __init__(self, context: ViewContext) -> None:
        super().__init__(context)
        self.table: DataTable[str | Text] = DataTable(id="alerts-table", cursor_type="row")
        for key, title in (
            ("severity", "Severity"),
            ("rule", "Rule"),
            ("subject", "Subject"),
            ("since", "Since"),
            ("status", "Status"),
            ("detail", "Details"),
        ):
            self.table.add_column(title, key=key)
        self.count_line = Static("Reading the alerts…", id="alerts-count")
        self.detail = Static("", id="alert-detail")
        self.alerts: dict[str, AlertRow] = {}
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield self.count_line
        yield self.table
        yield self.detail
        yield Footer()

    def on_mount(self) -> None:
        self.table.focus()

    @property
    def selected(self) -> AlertRow | None:
        return self.alerts.get(row_under_cursor(self.table))

    @property
    def shown_alerts(self) -> list[int]:
        """Alert ids as the table shows them, top to bottom."""
        return [self.alerts[str(row.key.value)].alert_id for row in self.table.ordered_rows]

    def select(self, alert_id: int) -> None:
        self.table.move_cursor(row=self.table.get_row_index(str(alert_id)), animate=False)

    def draw(self, snapshot: FleetSnapshot) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="alerts", exit_on_error=False)
    def load(self) -> None:
        try:
            found = self.context.backend.alerts(RECENT)
        # A failed read is the app's to report; the next snapshot reads again.
        except Exception as exc:
            self.post_message(BackendFailed(f"{type(exc).__name__}: {exc}"))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(AlertsLoaded(found))

    def on_alerts_loaded(self, message: AlertsLoaded) -> None:
        self.show(message.alerts)

    def show(self, view: AlertsView) -> None:
        """Fill the table: open alerts, then the cleared; the cursor kept on its alert."""
        now = self.context.now_ms()
        chosen = self.selected
        rows = {str(a.alert_id): a for a in (*view.open, *view.recent)}
        if rows != self.alerts or list(rows) != list(self.alerts):
            table = self.table
            table.clear()
            for key, alert in rows.items():
                table.add_row(*alert_cells(alert, now), key=key)
            self.alerts = rows
            if chosen is not None and str(chosen.alert_id) in rows:
                self.select(chosen.alert_id)
        critical = sum(1 for a in view.open if a.severity == "critical")
        self.count_line.update(
            Text.assemble(
                (f"{len(view.open)} open", "bold red" if view.open else "bold"),
                f" ({critical} critical) · {len(view.recent)} cleared lately",
            )
        )
        self.loaded = True
        self._show_detail()

    def _show_detail(self) -> None:
        alert = self.selected
        self.detail.update("" if alert is None else alert_detail(alert, self.context.now_ms()))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def action_acknowledge(self) -> None:
        alert = self.selected
        if alert is None or alert.state != "open":
            self.notify("Pick an open alert to acknowledge.", severity="warning")
            return
        backend, alert_id = self.context.backend, alert.alert_id

        def noted(note: str | None) -> None:
            if note is not None:
                self.context.act(
                    "Acknowledge alert", lambda: backend.acknowledge_alert(alert_id, note)
                )

        title = f"Acknowledge {alert.rule} on {alert.subject}: what is being done?"
        self.app.push_screen(NoteScreen(title, "e.g. technician on the way"), callback=noted)
