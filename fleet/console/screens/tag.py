"""The dialog that changes a board's tags: ``+tag`` adds, ``-tag`` removes, a bare word adds;
Enter applies, ``escape`` cancels. :func:`parse_tag_edit` reads what was typed (pure)."""

from __future__ import annotations

import re
from typing import ClassVar, Final

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

#: What a tag may be: what the CLI and the rollout targets can name without quoting.
_TAG: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")


def parse_tag_edit(text: str) -> tuple[list[str], list[str]]:
    """Tags to add and to remove from ``+a -b c`` (``c`` adds too). Raises ``ValueError``
    for an empty edit, a malformed tag, or one both added and removed."""
    add: list[str] = []
    remove: list[str] = []
    for word in text.split():
        sign, tag = (word[0], word[1:]) if word[0] in "+-" else ("+", word)
        if not _TAG.fullmatch(tag):
            raise ValueError(
                f"{word!r} is not a tag: letters, digits and _ . : - only, after + or -"
            )
        (add if sign == "+" else remove).append(tag)
    if not add and not remove:
        raise ValueError("no tags given: write +tag to add one, -tag to remove one")
    both = sorted(set(add) & set(remove))
    if both:
        raise ValueError(f"{', '.join(both)}: both added and removed")
    return add, remove


class TagScreen(ModalScreen[str | None]):
    """Dismissed with what was typed, or ``None`` when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, board_id: str, tags: tuple[str, ...]) -> None:
        super().__init__()
        self.board_id = board_id
        self.tags = tags

    def compose(self) -> ComposeResult:
        with Vertical(id="tag"):
            yield Static(f"Tags of {self.board_id}: {', '.join(self.tags) or 'none'}")
            yield Input(placeholder="+tag adds, -tag removes", id="tag-input")
            yield Static("Enter applies (audited) · escape cancels", id="tag-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
