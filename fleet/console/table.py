"""A table that draws only the rows in view, for the console's lists of 10,000 boards.

Textual's ``DataTable`` measures and renders every row it is given (a fraction of a
millisecond each: seconds for a city's fleet, again at each rebuild). :class:`VirtualTable`
keeps rows as keyed tuples of cells and an order of keys; it draws the header and the
lines in view through Textual's line API, so a frame costs the same at 40 rows as at 10,000.
Changing the order or the cells is a dictionary or list assignment; the screen that owns the
table decides the order (filter and sort), the table only shows it.

Keys: up/down, page up/down, home/end move the cursor; enter chooses the row under it
(:class:`VirtualTable.RowChosen`). A click on a row moves the cursor there; a click on the
header posts :class:`VirtualTable.HeaderClicked` with the column's key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

Cell = str | Text
#: Spaces between two columns.
GAP = 2


@dataclass(frozen=True, slots=True)
class TableColumn:
    key: str
    title: str


class VirtualTable(ScrollView, can_focus=True):
    """Rows keyed by string, shown in :attr:`order`; one header line, a row cursor."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"virtual-table--header", "virtual-table--cursor"}
    DEFAULT_CSS = """
    VirtualTable {
        background: $surface;
    }
    VirtualTable > .virtual-table--header {
        text-style: bold;
        background: $panel;
    }
    VirtualTable > .virtual-table--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
        text-style: bold;
    }
    VirtualTable:blur > .virtual-table--cursor {
        background: $block-cursor-blurred-background;
        text-style: none;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "to_end(-1)", "First", show=False),
        Binding("end", "to_end(1)", "Last", show=False),
        Binding("enter", "choose", "Open", show=False),
    ]

    cursor_row: reactive[int] = reactive(0, always_update=True)

    @dataclass
    class RowChosen(Message):
        """Enter was pressed on the row of ``key``."""

        table: VirtualTable
        key: str

    @dataclass
    class HeaderClicked(Message):
        table: VirtualTable
        column: str

    def __init__(self, columns: Sequence[TableColumn], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns = tuple(columns)
        self._widths = [len(c.title) for c in self.columns]
        self._cells: dict[str, tuple[Cell, ...]] = {}
        self._order: list[str] = []
        self._index: dict[str, int] | None = {}
        #: Rendered rows (without the cursor's style), by key; dropped when a row changes.
        self._strips: dict[str, Strip] = {}

    # --- what the owner sets ----------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def order(self) -> list[str]:
        """The keys shown, top to bottom (a copy)."""
        return list(self._order)

    def set_cells(self, key: str, cells: tuple[Cell, ...]) -> None:
        """Set a row's cells (it is shown once :meth:`set_order` lists its key). The table is
        redrawn at the next :meth:`set_order` or ``refresh()``: one refresh per batch of
        rows, not one per row."""
        if self._cells.get(key) == cells:
            return
        self._cells[key] = cells
        self._strips.pop(key, None)
        for i, cell in enumerate(cells):
            width = cell.cell_len if isinstance(cell, Text) else len(cell)
            if width > self._widths[i]:
                self._widths[i] = width
                self._strips.clear()

    def forget(self, key: str) -> None:
        """Drop a row's cells (it must no longer be in the order)."""
        self._cells.pop(key, None)
        self._strips.pop(key, None)

    def cell(self, key: str, column: str) -> Cell:
        index = next(i for i, c in enumerate(self.columns) if c.key == column)
        return self._cells[key][index]

    def set_order(self, keys: list[str], *, keep_cursor_on: str | None = None) -> None:
        """Show ``keys`` in this order; the cursor goes to ``keep_cursor_on`` if shown."""
        self._order = keys
        self._index = None
        self.virtual_size = Size(sum(self._widths) + GAP * len(self._widths), len(keys) + 1)
        if keep_cursor_on is not None and (row := self.row_of(keep_cursor_on)) is not None:
            self.move_cursor(row)
        else:
            self.move_cursor(min(self.cursor_row, max(len(keys) - 1, 0)))
        self.refresh()

    def row_of(self, key: str) -> int | None:
        if self._index is None:
            self._index = {k: i for i, k in enumerate(self._order)}
        return self._index.get(key)

    @property
    def cursor_key(self) -> str | None:
        if not self._order:
            return None
        return self._order[min(self.cursor_row, len(self._order) - 1)]

    def move_cursor(self, row: int) -> None:
        self.cursor_row = max(0, min(row, len(self._order) - 1))
        self._scroll_to_cursor()

    def column_at(self, x: int) -> str | None:
        """The key of the column drawn at virtual x (``None``: between or past columns)."""
        left = 0
        for column, width in zip(self.columns, self._widths, strict=True):
            if left <= x < left + width + GAP:
                return column.key
            left += width + GAP
        return None

    # --- drawing ----------------------------------------------------------------------------

    def _scroll_to_cursor(self) -> None:
        rows_in_view = max(self.scrollable_content_region.height - 1, 1)
        top = self.scroll_offset.y
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + rows_in_view:
            self.scroll_to(y=self.cursor_row - rows_in_view + 1, animate=False)

    def watch_cursor_row(self) -> None:
        self.refresh()

    def _line(self, cells: Sequence[Cell], style: Style | None = None) -> Strip:
        line = Text(no_wrap=True, overflow="ellipsis", end="")
        for cell, width in zip(cells, self._widths, strict=True):
            text = cell if isinstance(cell, Text) else Text(cell)
            if text.cell_len > width:
                text = text.copy()
                text.truncate(width, overflow="ellipsis")
            line.append_text(text)
            line.append(" " * (width - text.cell_len + GAP))
        segments = list(line.render(self.app.console))
        strip = Strip(segments, line.cell_len)
        return strip if style is None else strip.apply_style(style)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            header = self.get_component_rich_style("virtual-table--header")
            strip = self._line([c.title for c in self.columns], base + header)
            return strip.crop_extend(scroll_x, scroll_x + width, base + header)
        row = scroll_y + y - 1
        if row >= len(self._order):
            return Strip([Segment(" " * width, base)], width)
        key = self._order[row]
        drawn = self._strips.get(key)
        if drawn is None:
            drawn = self._strips[key] = self._line(self._cells[key])
        if row == self.cursor_row:
            cursor = self.get_component_rich_style("virtual-table--cursor")
            return drawn.apply_style(base + cursor).crop_extend(
                scroll_x, scroll_x + width, base + cursor
            )
        return drawn.apply_style(base).crop_extend(scroll_x, scroll_x + width, base)

    # --- input ------------------------------------------------------------------------------

    def action_cursor(self, step: int) -> None:
        self.move_cursor(self.cursor_row + step)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self.cursor_row + direction * max(self.size.height - 2, 1))

    def action_to_end(self, direction: int) -> None:
        self.move_cursor(0 if direction < 0 else len(self._order) - 1)

    def action_choose(self) -> None:
        key = self.cursor_key
        if key is not None:
            self.post_message(self.RowChosen(self, key))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            column = self.column_at(offset.x + self.scroll_offset.x)
            if column is not None:
                self.post_message(self.HeaderClicked(self, column))
            return
        row = self.scroll_offset.y + offset.y - 1
        if row < len(self._order):
            if row == self.cursor_row and event.chain > 1:
                self.action_choose()
            self.move_cursor(row)
