"""The Audit screen: the operators' audit log, newest first, filtered as you type (every word
in the operator, action, target or result), under a line that says whether its hash chain
verifies (``fleet.audit.verify``) and, if not, what was found.

The log is read in a thread worker on each snapshot and on each change of the filter; a read
for a filter since changed is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.worker import get_current_worker

from fleet.console.backend import FleetSnapshot
from fleet.console.operations import AuditRow, AuditView
from fleet.console.screens.base import FleetView
from fleet.console.view import BackendFailed, ViewContext
from fleet.inventory import when

#: Entries shown at most (the newest that match).
LIMIT: Final = 500


@dataclass
class AuditLoaded(Message):
    """A worker read the log for ``text``."""

    text: str
    audit: AuditView


def audit_cells(entry: AuditRow) -> tuple[str | Text, ...]:
    failed = entry.result != "ok"
    return (
        str(entry.seq),
        when(entry.at_ms),
        entry.operator,
        entry.action,
        entry.target,
        Text(entry.result, style="red" if failed else "green"),
    )


def chain_text(view: AuditView, shown: int) -> Text:
    """``chain verifies · 12 of 240 entries`` or what verification found, in red."""
    counted = f" · {shown} of {view.total} entries"
    if view.intact:
        return Text.assemble(("✔ hash chain verifies", "bold green"), counted)
    return Text.assemble(
        ("✘ hash chain does not verify: ", "bold red"),
        ("; ".join(view.problems), "red"),
        counted,
    )


class AuditScreen(FleetView):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self, context: ViewContext) -> None:
        super().__init__(context)
        self.filter_input = Input(
            placeholder="Filter: operator, action, target, result", id="audit-filter"
        )
        self.chain = Static("Reading the audit log…", id="audit-chain")
        self.table: DataTable[str | Text] = DataTable(id="audit-table", cursor_type="row")
        for key, title in (
            ("seq", "Seq"),
            ("at", "At"),
            ("operator", "Operator"),
            ("action", "Action"),
            ("target", "Target"),
            ("result", "Result"),
        ):
            self.table.add_column(title, key=key)
        #: The view shown last, and the filter it was read for.
        self.audit: AuditView | None = None
        self.shown_text: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield self.filter_input
        yield self.chain
        yield self.table
        yield Footer()

    def on_mount(self) -> None:
        self.table.focus()

    @property
    def shown_seqs(self) -> list[int]:
        """Entry seqs as the table shows them, top to bottom."""
        return [int(str(row.key.value)) for row in self.table.ordered_rows]

    def draw(self, snapshot: FleetSnapshot) -> None:
        self.load(self.filter_input.value)

    @work(thread=True, exclusive=True, group="audit", exit_on_error=False)
    def load(self, text: str) -> None:
        try:
            found = self.context.backend.audit(text or None, LIMIT)
        # A failed read is the app's to report; the next snapshot reads again.
        except Exception as exc:
            self.post_message(BackendFailed(f"{type(exc).__name__}: {exc}"))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(AuditLoaded(text, found))

    def on_audit_loaded(self, message: AuditLoaded) -> None:
        if message.text != self.filter_input.value:
            return  # read for a filter since changed; the read for the new one is under way
        if message.audit != self.audit:
            table = self.table
            table.clear()
            for entry in message.audit.entries:
                table.add_row(*audit_cells(entry), key=str(entry.seq))
            self.chain.update(chain_text(message.audit, len(message.audit.entries)))
            self.audit = message.audit
        self.shown_text = message.text

    def on_input_changed(self, event: Input.Changed) -> None:
        self.load(event.value)

    def action_focus_filter(self) -> None:
        self.filter_input.focus()

    def action_clear_filter(self) -> None:
        self.filter_input.value = ""
        self.table.focus()
