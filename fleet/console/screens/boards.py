"""The Boards screen: every board in a table that sorts by any column and filters as you type.

Rows are keyed by board id. A snapshot or a filter changes the table in place: cells that
changed are updated, rows that left or came are removed or added, and the table is rebuilt
only when many rows come and go at once (removing a row costs the whole table). The cursor
stays on the board it was on whenever that board is still shown.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Header, Input, Static

from fleet.console.backend import BoardRow, FleetSnapshot
from fleet.console.health import board_state, liveness, seen_text
from fleet.console.screens.base import FleetView
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
#: Beyond this many rows coming or going, clearing and refilling the table is cheaper.
REBUILD_AT: Final = 200

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
    #: Tests turn the filter's cursor blink off (an autouse fixture), for stable frames.
    CURSOR_BLINK: ClassVar[bool] = True
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
        self.filter_input.cursor_blink = self.CURSOR_BLINK
        self.table: DataTable[str | Text] = DataTable(id="boards-table", cursor_type="row")
        for column in COLUMNS:
            self.table.add_column(column.title, key=column.key)
        self.count_line = Static("", id="boards-count")
        self._rows: dict[str, BoardRow] = {}
        self._states: dict[str, str] = {}
        self._cells: dict[str, Cells] = {}
        self._hay: dict[str, str] = {}
        self._terms: tuple[str, ...] = ()
        #: The cells the table holds now, by board id.
        self._drawn: dict[str, Cells] = {}
        self._reorder = False
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
        table = self.table
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    @property
    def shown_boards(self) -> list[str]:
        """Board ids as the table shows them, top to bottom."""
        return [row.key.value for row in self.table.ordered_rows if row.key.value is not None]

    def draw(self, snapshot: FleetSnapshot) -> None:
        now = self.context.now_ms()
        window = self.context.stale_after_ms
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
            self._states[board.board_id] = state
            self._cells[board.board_id] = board_cells(board, state, now, style)
            self._hay[board.board_id] = haystack(board, state)
        for gone in self._rows.keys() - rows.keys():
            del self._states[gone], self._cells[gone], self._hay[gone]
        self._rows = rows
        self._sync()

    def _sync(self) -> None:
        """Make the table show the matching boards, sorted, the cursor on its board."""
        table = self.table
        cursor = self.cursor_board
        terms = self._terms
        wanted = [b for b in self._rows if not terms or matches(self._hay[b], terms)]
        wanted_set = set(wanted)
        present = {key.value for key in table.rows if key.value is not None}
        leaving = present - wanted_set
        coming = [b for b in wanted if b not in present]
        if len(leaving) + len(coming) > REBUILD_AT:
            table.clear()
            for board_id in self._sorted(wanted):
                table.add_row(*self._cells[board_id], key=board_id)
        else:
            # Sorting re-renders the whole table: only when an order may have changed.
            reorder = self._reorder or bool(leaving or coming)
            for board_id in leaving:
                table.remove_row(board_id)
            for board_id in present & wanted_set:
                reorder = self._update_row(table, board_id) or reorder
            for board_id in coming:
                table.add_row(*self._cells[board_id], key=board_id)
            if reorder:
                self._sort()
        self._reorder = False
        self._drawn = {b: self._cells[b] for b in wanted}
        if cursor is not None and cursor in wanted_set:
            row = table.get_row_index(cursor)
            if row != table.cursor_row:
                table.move_cursor(row=row, animate=False)
        count = (
            f"{len(wanted)} of {len(self._rows)} boards"
            f" · sorted by {_BY_KEY[self.sort_column].title}{' ↓' if self.sort_reverse else ''}"
        )
        if count != self._count_text:
            self._count_text = count
            self.count_line.update(count)

    def _update_row(self, table: DataTable[str | Text], board_id: str) -> bool:
        """Update the cells of a row that changed; whether the sorted column's did."""
        new = self._cells[board_id]
        old = self._drawn.get(board_id)
        if old == new:
            return False
        for index, (column, cell) in enumerate(zip(COLUMN_KEYS, new, strict=True)):
            if old is None or old[index] != cell:
                table.update_cell(board_id, column, cell, update_width=True)
        sorted_on = COLUMN_KEYS.index(self.sort_column)
        return old is None or old[sorted_on] != new[sorted_on]

    def _sort_key(self, board_id: str) -> tuple[Any, str]:
        column = _BY_KEY[self.sort_column]
        return (column.sort_key(self._rows[board_id], self._states[board_id]), board_id)

    def _sorted(self, board_ids: list[str]) -> list[str]:
        return sorted(board_ids, key=self._sort_key, reverse=self.sort_reverse)

    def _sort(self) -> None:
        # The board column holds the board id itself, the key into what the sort needs.
        self.table.sort("board", key=self._sort_key, reverse=self.sort_reverse)

    def sort_by(self, column: str, *, reverse: bool | None = None) -> None:
        """Sort by ``column`` (a key of :data:`COLUMNS`); the same column again reverses."""
        if reverse is None:
            reverse = not self.sort_reverse if column == self.sort_column else False
        self.sort_column, self.sort_reverse = column, reverse
        self._reorder = True
        self._sync()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        if event.column_key.value is not None:
            self.sort_by(event.column_key.value)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row opens its board."""
        if event.row_key.value is not None:
            self.context.open_board(event.row_key.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in the filter opens the first board it shows (or the one under the cursor)."""
        board = self.cursor_board
        if board is not None:
            self.context.open_board(board)

    def on_input_changed(self, event: Input.Changed) -> None:
        self._terms = tuple(event.value.lower().split())
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
