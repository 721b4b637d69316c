"""How the console names a board's liveness: pure, the time passed in.

A board is *online* when its gateway heard from it within the window, *stale* when it did
once but not since, *never seen* when no gateway ever reported it. The window is the
console's, not the health rules' (``fleet.health.rules.stale`` counts a board's own upload
cycles and raises alerts; this only colours a screen).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from typing import Final

from fleet.console.backend import BoardRow

#: A board silent longer than this is shown stale (ms).
DEFAULT_STALE_AFTER_MS: Final = 10 * 60 * 1000


class Liveness(Enum):
    ONLINE = "online"
    STALE = "stale"
    NEVER = "never seen"

    @property
    def style(self) -> str:
        """The Rich style the screens draw it in (the stylesheet cannot reach tree labels)."""
        return _STYLES[self]


_STYLES: Final = {
    Liveness.ONLINE: "green",
    Liveness.STALE: "yellow",
    Liveness.NEVER: "bright_black",
}


def liveness(last_seen_ms: int | None, now_ms: int, stale_after_ms: int) -> Liveness:
    if last_seen_ms is None:
        return Liveness.NEVER
    return Liveness.ONLINE if now_ms - last_seen_ms <= stale_after_ms else Liveness.STALE


@dataclass(frozen=True, slots=True)
class Counts:
    """Boards under one node of the fleet, by liveness."""

    online: int = 0
    stale: int = 0
    never: int = 0

    @property
    def total(self) -> int:
        return self.online + self.stale + self.never

    def add(self, state: Liveness) -> Counts:
        return Counts(
            self.online + (state is Liveness.ONLINE),
            self.stale + (state is Liveness.STALE),
            self.never + (state is Liveness.NEVER),
        )

    @property
    def worst(self) -> Liveness:
        """The colour a node takes: the worst of its boards (never seen only when all are)."""
        if self.stale or (self.never and self.online):
            return Liveness.STALE
        if self.online:
            return Liveness.ONLINE
        return Liveness.NEVER if self.never else Liveness.ONLINE


def board_state(board: BoardRow, now_ms: int, stale_after_ms: int) -> str:
    """The Boards table's state: liveness, and the OTA step when one is under way."""
    state = liveness(board.last_seen_ms, now_ms, stale_after_ms).value
    return f"{state}, {board.ota_state}" if board.ota_state else state


def seen_text(last_seen_ms: int | None, now_ms: int) -> str:
    """UTC time of day for today, the date for older, ``never``."""
    if last_seen_ms is None:
        return "never"
    seen = time.gmtime(last_seen_ms / 1000)
    today = time.gmtime(now_ms / 1000)
    if seen[:3] == today[:3]:
        return time.strftime("%H:%M:%SZ", seen)
    return time.strftime("%Y-%m-%d", seen)
