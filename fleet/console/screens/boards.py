"""The Boards screen: every board in a table that sorts by any column and filters as you type.

The table (:class:`~fleet.console.table.VirtualTable`) draws only the rows in view. A
snapshot updates the cells of the boards that changed; the order is filtered and sorted again
only when boards came or went, the filter changed, or a value in the sorted column did. The
cursor stays on the board it was on whenever that board is still shown.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Header, Input, Static

from fleet.console.backend import BoardRow, FleetSnapshot
from fleet.console.health import board_state, liveness, seen_text
from fleet.console.screens.base import FleetView
from fleet.console.table import TableColumn, VirtualTable
from fleet.console.view import ViewContext


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    title: str
    #: What the column sorts on (ties go by board id).
    sort_key: Callable[[BoardRow, str], Any]


def _missing_last(value: float | None) -> float:
    return math.inf if value is None else value


COLUMNS: Final = (
    Column("board", "Board", lambda b, s: b.board_id),
    Column("site", "Site", lambda b, s: b.site_id),
    Column("gateway", "Gateway", lambda b, s: b.gateway_id),
    Column("kind", "Kind", lambda b, s: b.kind),
    Column("tags", "Tags", lambda b, s: b.tags),
    Column("state", "State", lambda b, s: s),
    Column("release", "Release", lambda b, s: b.running),
    # Newest first reads best, and boards never seen go last.
    Column("seen", "Last seen", lambda b, s: -(b.last_seen_ms or -math.inf)),
    Column("battery", "Battery", lambda b, s: _missing_last(b.battery)),
    Column("rssi", "RSSI", lambda b, s: _missing_last(None if b.rssi is None else -b.rssi)),
)
COLUMN_KEYS: Final = tuple(c.key for c in COLUMNS)
_BY_KEY: Final = {c.key: c for c in COLUMNS}

Cells = tuple[str | Text, ...]


def board_cells(board: BoardRow, state: str, now_ms: int, style: str) -> Cells:
    return (
        board.board_id,
        board.site_id,
        board.gateway_id,
        board.kind,
        ",".join(board.tags) or "-",
        Text(state, style=style),
        str(board.running) if board.running else "factory",
        seen_text(board.last_seen_ms, now_ms),
        "-" if board.battery is None else f"{board.battery:.2f} V",
        "-" if board.rssi is None else f"{board.rssi:.0f} dBm",
    )


def haystack(board: BoardRow, state: str) -> str:
    """What the filter searches: id, site, gateway, kind, tags, state, release."""
    release = str(board.running) if board.running else "factory"
    return "\n".join(
        (board.board_id, board.site_id, board.gateway_id, board.kind, *board.tags, state, release)
    ).lower()


def matches(text: str, terms: Sequence[str]) -> bool:
    """Every term is somewhere in the board's text."""
    return all(term in text for term in terms)


class BoardsScreen(FleetView):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("s", "next_sort", "Sort by next column"),
        Binding("r", "reverse_sort", "Reverse sort"),
    ]

    def __init__(self, context: ViewContext) -> None:
        super().__init__(context)
        self.sort_column = "board"
        self.sort_reverse = False
        self.filter_input = Input(
            placeholder="Filter: id, site, kind, tag, state, release", id="board-filter"
        )
        self.table = VirtualTable([TableColumn(c.key, c.title) for c in COLUMNS], id="boards-table")
        self.count_line = Static("", id="boards-count")
        self._rows: dict[str, BoardRow] = {}
        self._states: dict[str, str] = {}
        self._cells: dict[str, Cells] = {}
        self._hay: dict[str, str] = {}
        self._terms: tuple[str, ...] = ()
        #: Every board id in the sort order; filtering keeps this order.
        self._all_sorted: list[str] = []
        #: The boards must be sorted again (a sort value changed, boards came or went), or
        #: filtered again (the filter or a board's text changed).
        self._resort = True
        self._refilter = True
        self._count_text = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield self.filter_input
        yield self.table
        yield self.count_line
        yield Footer()

    def on_mount(self) -> None:
        self.table.focus()

    @property
    def cursor_board(self) -> str | None:
        """The id of the board under the cursor (``None``: the table is empty)."""
        return self.table.cursor_key

    @property
    def shown_boards(self) -> list[str]:
        """Board ids as the table shows them, top to bottom."""
        return self.table.order

    def draw(self, snapshot: FleetSnapshot) -> None:
        now = self.context.now_ms()
        window = self.context.stale_after_ms
        sorted_on = COLUMN_KEYS.index(self.sort_column)
        rows: dict[str, BoardRow] = {}
        for board in snapshot.boards:
            rows[board.board_id] = board
            state = board_state(board, now, window)
            if (
                self._rows.get(board.board_id) == board
                and self._states.get(board.board_id) == state
            ):
                continue
            style = liveness(board.last_seen_ms, now, window).style
            cells = board_cells(board, state, now, style)
            old = self._cells.get(board.board_id)
            if old is None or old[sorted_on] != cells[sorted_on]:
                self._resort = True
            hay = haystack(board, state)
            if self._terms and hay != self._hay.get(board.board_id):
                self._refilter = True
            self._states[board.board_id] = state
            self._cells[board.board_id] = cells
            self._hay[board.board_id] = hay
            self.table.set_cells(board.board_id, cells)
        for gone in self._rows.keys() - rows.keys():
            del self._states[gone], self._cells[gone], self._hay[gone]
            self.table.forget(gone)
            self._resort = True
        self._rows = rows
        self._sync()

    def _sync(self) -> None:
        """Make the table show the matching boards, sorted, the cursor on its board."""
        total = len(self._rows)
        if self._resort:
            self._all_sorted = sorted(self._rows, key=self._sort_key, reverse=self.sort_reverse)
            self._resort, self._refilter = False, True
        if self._refilter:
            terms = self._terms
            hay = self._hay
            wanted = (
                [b for b in self._all_sorted if matches(hay[b], terms)]
                if terms
                else list(self._all_sorted)
            )
            self.table.set_order(wanted, keep_cursor_on=self.table.cursor_key)
            self._refilter = False
        else:
            self.table.refresh()
        count = (
            f"{self.table.row_count} of {total} boards"
            f" · sorted by {_BY_KEY[self.sort_column].title}{' ↓' if self.sort_reverse else ''}"
        )
        if count != self._count_text:
            self._count_text = count
            self.count_line.update(count)

    def _sort_key(self, board_id: str) -> tuple[Any, str]:
        column = _BY_KEY[self.sort_column]
        return (column.sort_key(self._rows[board_id], self._states[board_id]), board_id)

    def sort_by(self, column: str, *, reverse: bool | None = None) -> None:
        """Sort by ``column`` (a key of :data:`COLUMNS`); the same column again reverses."""
        if reverse is None:
            reverse = not self.sort_reverse if column == self.sort_column else False
        self.sort_column, self.sort_reverse = column, reverse
        self._resort = True
        self._sync()

    def on_virtual_table_header_clicked(self, event: VirtualTable.HeaderClicked) -> None:
        self.sort_by(event.column)

    def on_virtual_table_row_chosen(self, event: VirtualTable.RowChosen) -> None:
        """Enter on a row opens its board."""
        self.context.open_board(event.key)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in the filter opens the first board it shows (or the one under the cursor).
        The table takes the focus first, so coming back keys drive the table (``q`` quits)
        rather than type into the filter."""
        board = self.cursor_board
        if board is not None:
            self.table.focus()
            self.context.open_board(board)

    def on_input_changed(self, event: Input.Changed) -> None:
        terms = tuple(event.value.lower().split())
        if terms != self._terms:
            self._terms = terms
            self._refilter = True
            self._sync()

    def action_focus_filter(self) -> None:
        self.filter_input.focus()

    def action_clear_filter(self) -> None:
        self.filter_input.value = ""
        self.table.focus()

    def action_next_sort(self) -> None:
        index = (COLUMN_KEYS.index(self.sort_column) + 1) % len(COLUMN_KEYS)
        self.sort_by(COLUMN_KEYS[index], reverse=False)

    def action_reverse_sort(self) -> None:
        self.sort_by(self.sort_column, reverse=not self.sort_reverse)
