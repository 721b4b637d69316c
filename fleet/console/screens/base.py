"""What every screen of the console shares: it is built with the :class:`ViewContext`, draws
each snapshot the app hands it while in view, and catches up on the newest one when it is
mounted or comes back into view (snapshots that arrived while it was away are not replayed).
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen
from textual.widgets import DataTable

from fleet.console.backend import FleetSnapshot
from fleet.console.view import ViewContext


class FleetView(Screen[None]):
    """A screen that draws fleet snapshots. Subclasses implement :meth:`draw`."""

    def __init__(self, context: ViewContext) -> None:
        super().__init__()
        self.context = context
        #: The snapshot drawn last (``None``: none yet).
        self.shown: FleetSnapshot | None = None
        self._composed = False

    def on_mount(self) -> None:
        self._composed = True
        self._catch_up()

    def on_screen_resume(self) -> None:
        self._catch_up()

    def _catch_up(self) -> None:
        latest = self.context.latest()
        if latest is not None and latest is not self.shown:
            self.show_snapshot(latest)

    def show_snapshot(self, snapshot: FleetSnapshot) -> None:
        if not self._composed:
            return  # on_mount catches up
        self.shown = snapshot
        self.draw(snapshot)

    def draw(self, snapshot: FleetSnapshot) -> None:
        """Make the screen show ``snapshot``; called on the UI thread, so keep it quick."""
        raise NotImplementedError


def row_under_cursor(table: DataTable[Any]) -> str:
    """The key of the table's row under the cursor ("" when the table is empty)."""
    if not table.row_count:
        return ""
    return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value or ""
