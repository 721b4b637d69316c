"""The dialog that asks for a note (acknowledging an alert): what is being done about it.
An empty note is refused in the dialog, which stays open; ``escape`` cancels."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class NoteScreen(ModalScreen[str | None]):
    """Dismissed with the note (stripped, never empty), or ``None`` when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, placeholder: str) -> None:
        super().__init__()
        self.title_text = title
        self.note = Input(placeholder=placeholder, id="note-input")
        self.error = Static("", id="note-error")

    def compose(self) -> ComposeResult:
        with Vertical(id="note"):
            yield Static(self.title_text, id="note-title")
            yield self.note
            yield self.error
            yield Static("Enter to save · Escape to cancel", id="note-keys")

    def on_mount(self) -> None:
        self.note.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            self.error.update("A note is needed: say what is being done about it.")
            return
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)
