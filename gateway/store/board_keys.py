"""The ``board_keys`` table: each enrolled board's OSCORE key material. Its only SQL.

Written by ``simpul gateway boards import`` and the daemon's keys file (source ``file``) and
by the control process from a desired document's sealed keys (source ``control``); read by
the CoAP process, which polls :meth:`BoardKeyTable.mark` and builds its security contexts
from the rows (``gateway.oscore.contexts``). When a board's material changes, the old one is
kept in ``previous``: the CoAP process keeps answering under it until the board's first
request under the new one (key rotation without losing what the board buffered).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gateway.errors import BadBoardKeys
from gateway.oscore.keys import BoardKey, KeyMaterial
from gateway.store.schema import connect, now_ms, transaction

Source = Literal["file", "control"]


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A board's current key material, and the one before its last rotation."""

    board_id: str
    material: KeyMaterial
    previous: KeyMaterial | None
    source: str


class BoardKeyTable:
    """The ``board_keys`` table of one ``gateway.db``."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self._db = connect(path, read_only=read_only)

    def close(self) -> None:
        self._db.close()

    def put(self, keys: Iterable[BoardKey], *, source: Source) -> list[str]:
        """Enrol or re-key boards; returns the boards whose material changed.

        A board whose material changes keeps the old material as ``previous``. A ``sid``
        another board holds is refused (:class:`BadBoardKeys`) and nothing is written.
        """
        changed: list[str] = []
        with transaction(self._db) as db:
            stamp = self._next_stamp(db)
            for key in keys:
                text = json.dumps(key.material.to_json())
                row = db.execute(
                    "SELECT material FROM board_keys WHERE board_id = ?", (key.board_id,)
                ).fetchone()
                if row is not None and row[0] == text:
                    continue
                holder = db.execute(
                    "SELECT board_id FROM board_keys WHERE sid = ? AND board_id != ?",
                    (key.material.sid, key.board_id),
                ).fetchone()
                if holder is not None:
                    raise BadBoardKeys(
                        f"sid {key.material.sid.hex()} of {key.board_id} belongs to {holder[0]}"
                    )
                db.execute(
                    "INSERT INTO board_keys (board_id, sid, material, previous, source,"
                    " updated_ms) VALUES (?, ?, ?, NULL, ?, ?) ON CONFLICT (board_id) DO"
                    " UPDATE SET sid = excluded.sid, previous = material,"
                    " material = excluded.material, source = excluded.source,"
                    " updated_ms = excluded.updated_ms",
                    (key.board_id, key.material.sid, text, source, stamp),
                )
                changed.append(key.board_id)
        return changed

    def remove(self, board_ids: Iterable[str]) -> int:
        """Unenrol boards; returns how many were enrolled."""
        with transaction(self._db) as db:
            removed = 0
            for board_id in board_ids:
                cursor = db.execute("DELETE FROM board_keys WHERE board_id = ?", (board_id,))
                removed += cursor.rowcount
        return removed

    def boards(self, *, source: Source | None = None) -> list[str]:
        """Enrolled board ids (of one source, if given)."""
        if source is None:
            rows = self._db.execute("SELECT board_id FROM board_keys ORDER BY board_id")
        else:
            rows = self._db.execute(
                "SELECT board_id FROM board_keys WHERE source = ? ORDER BY board_id", (source,)
            )
        return [row[0] for row in rows]

    def all(self) -> list[StoredKey]:
        """Every enrolled board's keys."""
        rows = self._db.execute(
            "SELECT board_id, material, previous, source FROM board_keys ORDER BY board_id"
        )
        return [
            StoredKey(
                board_id,
                KeyMaterial.from_json(json.loads(material)),
                KeyMaterial.from_json(json.loads(previous)) if previous is not None else None,
                source,
            )
            for board_id, material, previous, source in rows
        ]

    def mark(self) -> tuple[int, int]:
        """(rows, newest change): different whenever the table changed (a removal lowers
        the count; a change stamps its row later than any before)."""
        count, newest = self._db.execute(
            "SELECT count(*), coalesce(max(updated_ms), 0) FROM board_keys"
        ).fetchone()
        return int(count), int(newest)

    @staticmethod
    def _next_stamp(db: sqlite3.Connection) -> int:
        (newest,) = db.execute("SELECT coalesce(max(updated_ms), 0) FROM board_keys").fetchone()
        return max(now_ms(), int(newest) + 1)
