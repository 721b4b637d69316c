"""The audit chain: intact logs pass, and every kind of tampering is named."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest

from fleet import audit
from fleet.store import FleetStore


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.db"
    with FleetStore(path) as store:
        for i in range(1, 6):
            store.append_audit("alice", "board.add", f"b{i}", {"kind": "air"}, "ok", at_ms=i)
    return path


def problems(path: Path) -> list[tuple[int, str]]:
    with FleetStore(path) as store:
        return [(p.seq, p.kind) for p in audit.verify(*store.audit_log())]


def forge(db: sqlite3.Connection, seq: int, prev: bytes) -> bytes:
    """A well-formed entry as someone who knows the algorithm would write it."""
    digest = audit.entry_digest(seq, 99, "mallory", "board.retire", "b1", {}, "ok", prev)
    db.execute(
        "INSERT INTO audit VALUES (?, 99, 'mallory', 'board.retire', 'b1', '{}', 'ok', ?, ?)",
        (seq, prev, digest),
    )
    return digest


def digest_of(db: sqlite3.Connection, seq: int) -> bytes:
    return bytes(db.execute("SELECT digest FROM audit WHERE seq = ?", (seq,)).fetchone()[0])


def test_an_intact_log_passes(path: Path) -> None:
    assert problems(path) == []
    with FleetStore(path) as store:
        entries, head = store.audit_log()
    assert head is not None
    assert (head.count, head.digest) == (5, entries[-1].digest)
    assert entries[0].prev == audit.GENESIS
    assert all(b.prev == a.digest for a, b in itertools.pairwise(entries))


def test_an_empty_log_passes(tmp_path: Path) -> None:
    assert problems(tmp_path / "fleet.db") == []


def test_an_edited_entry_is_named(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("UPDATE audit SET operator = 'mallory' WHERE seq = 3")
    assert problems(path) == [(3, "edited")]


def test_an_edited_and_rehashed_entry_is_named(path: Path) -> None:
    with sqlite3.connect(path) as db:
        prev = digest_of(db, 2)
        db.execute("DELETE FROM audit WHERE seq = 3")
        forge(db, 3, prev)
    assert problems(path) == [(3, "edited")]


def test_a_deleted_middle_entry_is_named(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM audit WHERE seq = 3")
    assert problems(path) == [(3, "deleted")]


def test_deleted_newest_entries_are_named_by_the_head(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM audit WHERE seq >= 4")
    assert problems(path) == [(4, "deleted")]


def test_a_deleted_newest_entry_stays_a_gap_after_later_appends(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM audit WHERE seq = 5")
    with FleetStore(path) as store:
        assert store.append_audit("bob", "site.add", "s", {}, "ok").seq == 6
    assert problems(path) == [(5, "deleted")]


def test_an_entry_inserted_at_the_end_is_named(path: Path) -> None:
    with sqlite3.connect(path) as db:
        forge(db, 6, digest_of(db, 5))
    assert problems(path) == [(6, "inserted")]


def test_an_entry_inserted_in_the_middle_is_named(path: Path) -> None:
    with sqlite3.connect(path) as db:
        for seq in (5, 4, 3):  # make room: renumber the entries after it
            db.execute("UPDATE audit SET seq = seq + 1 WHERE seq = ?", (seq,))
        forge(db, 3, digest_of(db, 2))
    found = problems(path)
    assert (3, "inserted") in found
    assert sorted(set(found) - {(3, "inserted")}) == [(4, "renumbered"), (5, "renumbered"),
                                                      (6, "renumbered")]  # fmt: skip


def test_a_deleted_head_is_named(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM audit_head")
    assert problems(path) == [(5, "head")]


def test_verify_messages_say_what_happened(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM audit WHERE seq IN (2, 3)")
    with FleetStore(path) as store:
        (problem,) = audit.verify(*store.audit_log())
    assert problem.message == "entries 2..3 deleted: entry 4 follows entry 1"
