"""Which release each board should run, from the applied desired document.

The seam for rollouts: :func:`desired_releases` is called whenever a document is applied
(and again each state cycle), and its answer replaces the per-board desired releases that
``gateway.ota.hints`` tells boards about. Today it is the plain per-board ``release`` of the
document; rollout waves (the document's ``rollout``, the boards' progress) come here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def desired_releases(
    doc: Any, progress: Mapping[str, Mapping[str, Any]], cached: frozenset[int]
) -> dict[str, int]:
    """board id -> the release seq it should run.

    ``doc``: the decoded desired document (``gateway.control.messages.Desired``);
    ``progress``: each board's state as the state message lists it (last health, OTA state,
    the release it runs); ``cached``: the release seqs the cache holds (only those may be
    desired). A board whose release is 0 (none set) or not cached gets none.
    """
    releases: dict[str, int] = {}
    for board_id, board in doc.boards.items():
        seq = _release(board)
        if seq and seq in cached:
            releases[board_id] = seq
    return releases


def _release(board: Any) -> int:
    value = board.get("release") if isinstance(board, Mapping) else getattr(board, "release", 0)
    return value if type(value) is int else 0


__all__ = ["desired_releases"]
