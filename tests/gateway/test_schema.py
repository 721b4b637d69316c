"""Schema versions: a gateway in the field is upgraded in place and loses nothing.

``tests/fixtures/gateway-v1/`` is the state directory of a gateway of schema version 1,
written by that release (``tests/fixtures/make_gateway_v1.py`` says how): 42 readings from
three boards, the JSON Lines uplink's cursor at 36, six signed batches covering ids 1..36 in
its batch file, six readings not yet batched or delivered, a health report.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway.batches.verify import ChainVerifier, KeySet, verify_sequence
from gateway.daemon import Gateway
from gateway.errors import StoreCorrupt
from gateway.store.batch_log import BatchLog
from gateway.store.outbox import Outbox
from gateway.store.registry import StoreReader
from gateway.store.schema import SCHEMA_VERSION, prepare
from tests.gateway.conftest import gateway_config

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "gateway-v1"


@pytest.fixture
def v1_state(tmp_path: Path) -> Path:
    """A copy of the version 1 state directory (the key private again, as the gateway left it)."""
    state = tmp_path / "state"
    shutil.copytree(FIXTURE, state)
    (state / "keys").chmod(0o700)
    (state / "keys" / "gateway.key").chmod(0o600)
    return state


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the gateway keeps, table by table."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {
            table: db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in (
                "readings",
                "boards",
                "uplink_progress",
                "batches",
                "batch_chain",
                "batch_progress",
            )
        }
    finally:
        db.close()


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def test_a_version_1_store_migrates_with_every_reading_cursor_and_batch_intact(
    v1_state: Path,
) -> None:
    db_path = v1_state / "gateway.db"
    before = dump(db_path)
    assert user_version(db_path) == 1
    assert len(before["readings"]) == 42

    assert prepare(db_path) == 1
    assert user_version(db_path) == SCHEMA_VERSION == 6
    after = dump(db_path)
    # Version 3's OTA tables exist, empty, with version 4's column of the release each runs,
    # and version 5's control tables.
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        control = ("control_desired", "control_revocations", "control_nonces", "board_commands")
        more = ("control_counters", "control_events", "control_marks", "control_rollout")
        for table in (
            "releases",
            "ota_revocations",
            "desired_releases",
            "board_ota",
            *control,
            *more,
        ):
            assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
        columns = [row[1] for row in db.execute("PRAGMA table_info(board_ota)")]
        assert columns == ["board_id", "state", "detail", "updated_ms", "running"]
    finally:
        db.close()
    for table in ("readings", "uplink_progress", "batches", "batch_chain", "batch_progress"):
        assert after[table] == before[table], table
    # The registry keeps every column it had, and counts no anomaly yet.
    assert [row[:-1] for row in after["boards"]] == before["boards"]
    assert {row[-1] for row in after["boards"]} == {0}

    outbox = Outbox(db_path, "file")
    try:
        assert outbox.delivered_id == 36
        assert [row.id for row in outbox.fetch(100)] == list(range(37, 43))
    finally:
        outbox.close()
    batch_log = BatchLog(db_path)
    try:
        assert (batch_log.head().state.seq, batch_log.head().batched_id) == (6, 36)
    finally:
        batch_log.close()
    reader = StoreReader(db_path)
    try:
        board = reader.board("aq-01")
        assert board is not None
        assert (board.last_seq, board.anomalies) == (13, 0)
        assert board.last_health == {"board": "aq-01", "boots": 3, "rssi": -61}
    finally:
        reader.close()
    # Opening again changes nothing: migrations run once.
    assert prepare(db_path) == SCHEMA_VERSION
    assert dump(db_path) == after


async def test_an_upgraded_gateway_extends_its_chain_and_delivers_what_was_waiting(
    v1_state: Path,
) -> None:
    config = gateway_config(
        v1_state, gateway_id="gw-fixture-1", site="fixture", **{"batches.max_age_ms": 50}
    )
    gateway = Gateway(config)
    await gateway.start()
    try:
        for _ in range(600):  # up to 30 s on a loaded machine
            stats = gateway.stats()
            if (
                stats["batches"]["waiting"] == 0
                and stats["uplinks"]["file"]["backlog"] == 0
                and stats["batch_uplinks"]["batch_file"]["backlog"] == 0
            ):
                break
            await asyncio.sleep(0.05)
        assert stats["batches"]["newest_seq"] == 7
    finally:
        await gateway.stop()
    verifier = ChainVerifier(KeySet.from_files([v1_state / "keys" / "gateway.pub"]))
    with (v1_state / "batches" / "batches.cbor").open("rb") as fp:
        outcomes = list(verify_sequence(fp, verifier))
    assert verifier.problems == []
    assert [o.batch.seq for o in outcomes if o.batch is not None] == list(range(1, 8))
    assert sum(len(o.readings) for o in outcomes) == 42


def test_a_store_from_a_newer_release_is_refused_and_left_untouched(v1_state: Path) -> None:
    db_path = v1_state / "gateway.db"
    db = sqlite3.connect(db_path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    before = db_path.read_bytes()
    with pytest.raises(StoreCorrupt, match="newer than this release"):
        prepare(db_path)
    assert db_path.read_bytes() == before
