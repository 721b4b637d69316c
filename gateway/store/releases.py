"""The OTA tables: cached releases, the newest revocation list, desired releases, and each
board's OTA state. Every SQL statement on them lives here (``gateway.ota`` has the logic)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.store.schema import connect, now_ms, transaction


@dataclass(frozen=True, slots=True)
class CachedRelease:
    """A row of ``releases``: a release that verified when it was added."""

    seq: int
    version: str
    hw: str
    manifest: bytes
    revocations: int
    total: int
    #: Its files' directory, relative to the state directory.
    directory: str
    added_ms: int


_COLUMNS = "seq, version, hw, manifest, revocations, total, directory, added_ms"


def _release(row: Any) -> CachedRelease:
    seq, version, hw, manifest, revocations, total, directory, added_ms = row
    return CachedRelease(
        int(seq),
        str(version),
        str(hw),
        bytes(manifest),
        int(revocations),
        int(total),
        str(directory),
        int(added_ms),
    )


class ReleaseTable:
    """The OTA tables of ``gateway.db`` on a connection of its own."""

    def __init__(self, path: Path) -> None:
        self._db: sqlite3.Connection = connect(path)

    def close(self) -> None:
        self._db.close()

    def release(self, seq: int) -> CachedRelease | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM releases WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else _release(row)

    def releases(self) -> list[CachedRelease]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM releases ORDER BY seq").fetchall()
        return [_release(row) for row in rows]

    def revocations_seq(self) -> int:
        """The seq of the newest revocation list seen (0: none yet)."""
        row = self._db.execute("SELECT seq FROM ota_revocations WHERE id = 1").fetchone()
        return 0 if row is None else int(row[0])

    def has_release(self, seq: int) -> bool:
        return (
            self._db.execute("SELECT 1 FROM releases WHERE seq = ?", (seq,)).fetchone() is not None
        )

    def add_release(
        self, release: CachedRelease, revocations: bytes, evict: Sequence[int] = ()
    ) -> None:
        """Record a verified release, and its revocation list if newer than the one kept;
        remove the releases ``evict`` names, and the desired releases that name them.

        Raises :class:`sqlite3.IntegrityError` if its seq is already cached."""
        with transaction(self._db):
            for seq in evict:
                self._db.execute("DELETE FROM releases WHERE seq = ?", (seq,))
                self._db.execute("DELETE FROM desired_releases WHERE seq = ?", (seq,))
            self._db.execute(
                f"INSERT INTO releases ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    release.seq,
                    release.version,
                    release.hw,
                    release.manifest,
                    release.revocations,
                    release.total,
                    release.directory,
                    release.added_ms,
                ),
            )
            self._db.execute(
                "INSERT INTO ota_revocations (id, seq, encoded) VALUES (1, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, encoded = excluded.encoded"
                " WHERE excluded.seq > ota_revocations.seq",
                (release.revocations, revocations),
            )

    def set_desired(self, scope: str, target: str, seq: int) -> None:
        """The release ``target`` (a board id, or a kind when ``scope`` is ``kind``) should run."""
        with transaction(self._db):
            self._db.execute(
                "INSERT INTO desired_releases (scope, target, seq, set_ms) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (scope, target) DO UPDATE SET seq = excluded.seq,"
                " set_ms = excluded.set_ms",
                (scope, target, seq, now_ms()),
            )

    def replace_board_desired(self, releases: dict[str, int]) -> None:
        """Make ``releases`` (board id -> seq) the whole of the per-board desired releases,
        in one transaction (the control channel's desired document owns them)."""
        with transaction(self._db):
            self._db.execute("DELETE FROM desired_releases WHERE scope = 'board'")
            self._db.executemany(
                "INSERT INTO desired_releases (scope, target, seq, set_ms)"
                " VALUES ('board', ?, ?, ?)",
                [(board, seq, now_ms()) for board, seq in sorted(releases.items())],
            )

    def desired(self) -> list[tuple[str, str, int]]:
        """Every desired release as (scope, target, seq)."""
        rows = self._db.execute(
            "SELECT scope, target, seq FROM desired_releases ORDER BY scope, target"
        ).fetchall()
        return [(str(scope), str(target), int(seq)) for scope, target, seq in rows]

    def data_version(self) -> int:
        """Changes when another connection has committed (SQLite ``PRAGMA data_version``)."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def board_ota(self) -> list[tuple[str, int, str, str | None, int]]:
        """Every board's OTA state as (board id, seq it runs, state, detail, updated ms)."""
        rows = self._db.execute(
            "SELECT board_id, running, state, detail, updated_ms FROM board_ota ORDER BY board_id"
        ).fetchall()
        return [
            (str(b), int(r), str(s), None if d is None else str(d), int(u))
            for b, r, s, d, u in rows
        ]


def record_board_ota(
    db: sqlite3.Connection,
    board_id: str,
    running: int,
    state: str,
    detail: str | None,
    at_ms: int,
) -> None:
    """A board's OTA state and the release it runs, from its health report; call in the
    writer's transaction."""
    db.execute(
        "INSERT INTO board_ota (board_id, running, state, detail, updated_ms)"
        " VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (board_id) DO UPDATE SET running = excluded.running,"
        " state = excluded.state, detail = excluded.detail, updated_ms = excluded.updated_ms",
        (board_id, running, state, detail, at_ms),
    )
