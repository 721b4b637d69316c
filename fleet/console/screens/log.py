"""The dialog that shows a board's log as its gateway sent it, scrollable; ``escape`` or
``q`` closes it."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class LogScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("q", "dismiss", "Close", show=False),
    ]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text = title
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(id="log"):
            yield Static(self.title_text, id="log-title")
            with VerticalScroll(id="log-scroll"):
                # Not markup: a log may hold square brackets.
                yield Static(self.text, id="log-text", markup=False)
            yield Static("escape closes", id="log-hint")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
