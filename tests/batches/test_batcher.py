"""The batcher over a real outbox: limits, chain across restarts, no forks, rotation; pruning
and the disk budget's drop policy."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.batches.format import decode
from gateway.batches.keys import load_or_create
from gateway.batches.verify import ChainVerifier, KeySet
from gateway.codec.senml import Reading
from gateway.store.batch_log import BatchLog, ChainMoved
from gateway.store.budget import Consumers, OutboxKeeper
from gateway.store.outbox import Outbox
from gateway.store.schema import prepare, read_counters
from gateway.store.writer import ReadingsJob, StoreWriter, SubmitResult
from gateway.uplinks.batcher import Batcher

NOW_MS = 1_700_000_000_000


def fill(db_path: Path, count: int, *, first: int = 0, received_ms: int = NOW_MS) -> None:
    """Insert ``count`` readings straight into the outbox (as the writer would)."""
    db = sqlite3.connect(db_path, isolation_level=None)
    with db:
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO readings (board_id, name, unit, kind, value, time_ms, received_ms)"
            " VALUES (?, 'pm2_5', 'ug/m3', 'v', ?, ?, ?)",
            [
                (f"aq-{i % 7}", 10.0 + i / 8, NOW_MS + i, received_ms)
                for i in range(first, first + count)
            ],
        )
        db.execute("COMMIT")
    db.close()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    prepare(tmp_path / "gateway.db")
    return tmp_path


def batcher(state: Path, *, now_ms: int = NOW_MS, **limits: int) -> Batcher:
    return Batcher(
        BatchLog(state / "gateway.db", synchronous="FULL"),
        load_or_create(state),
        gateway_id="gw-1",
        site="kec-a",
        clock_ms=lambda: now_ms,
        monotonic=lambda: 0.0,
        **limits,
    )


def verify_all(state: Path, batches: list[bytes]) -> ChainVerifier:
    keys = KeySet.from_files([state / "keys" / "gateway.pub"])
    verifier = ChainVerifier(keys)
    for encoded in batches:
        verifier.feed(encoded)
    return verifier


def stored(state: Path) -> list[bytes]:
    log = BatchLog(state / "gateway.db")
    try:
        return [b.encoded for b in log.fetch_after(0, 1_000_000)]
    finally:
        log.close()


def test_batch_cut_at_count_limit_not_before_age(state: Path) -> None:
    fill(state / "gateway.db", 25)
    b = batcher(state, max_readings=10, max_age_ms=5000)
    assert b.batch_once() == 10
    assert b.batch_once() == 10
    assert b.batch_once() == 0  # 5 waiting, younger than max_age
    assert b.due_in_ms() == 5000


def test_batch_cut_at_age_limit(state: Path) -> None:
    fill(state / "gateway.db", 5, received_ms=NOW_MS - 6000)
    b = batcher(state, max_readings=10, max_age_ms=5000)
    assert b.batch_once() == 5
    (encoded,) = stored(state)
    batch = decode(encoded)
    assert (batch.seq, batch.first_id, batch.last_id, len(batch.readings)) == (1, 1, 5, 5)


def test_chain_continues_across_restarts_without_gaps(state: Path) -> None:
    fill(state / "gateway.db", 30)
    first = batcher(state, max_readings=10)
    first.batch_once()
    first.log.close()
    again = batcher(state, max_readings=10)  # a restart: chain state from the store
    assert again.batch_once() == 10
    assert again.batch_once() == 10
    verifier = verify_all(state, stored(state))
    assert not verifier.failed, verifier.problems
    assert verifier.chains["gw-1"].readings == 30
    assert [decode(b).first_id for b in stored(state)] == [1, 11, 21]


def test_second_batcher_cannot_fork_the_chain(state: Path) -> None:
    fill(state / "gateway.db", 20)
    one, two = batcher(state, max_readings=10), batcher(state, max_readings=10)
    assert one.batch_once() == 10
    # ``two`` still believes the chain is empty: its append must be refused, not stored.
    assert two.batch_once() == 0
    assert two.head == one.head  # it reloaded the chain instead
    assert two.batch_once() == 10
    batches = stored(state)
    assert [decode(b).seq for b in batches] == [1, 2]
    assert not verify_all(state, batches).failed


def test_append_is_compare_and_set(state: Path) -> None:
    fill(state / "gateway.db", 10)
    b = batcher(state, max_readings=10)
    before = b.head
    b.batch_once()
    with pytest.raises(ChainMoved):
        b.log.append(before, b"x", b.head.state, first_id=1, last_id=1, readings=1, created_ms=0)


def test_rotation_announced_then_new_key_signs(state: Path) -> None:
    fill(state / "gateway.db", 30)
    b = batcher(state, max_readings=10)
    keys = KeySet.from_files([state / "keys" / "gateway.pub"])
    b.batch_once()
    old_kid = b.identity.kid
    b.identity.begin_rotation()
    b.batch_once()
    b.batch_once()
    batches = [decode(e) for e in stored(state)]
    assert batches[1].next_key is not None
    assert batches[1].kid == old_kid
    assert batches[2].kid != old_kid
    verifier = ChainVerifier(keys)  # knows only the first key
    for batch in batches:
        verifier.feed(batch.encoded)
    assert not verifier.failed, verifier.problems


def test_unsignable_reading_is_skipped_and_counted(state: Path) -> None:
    fill(state / "gateway.db", 3, received_ms=0)
    db = sqlite3.connect(state / "gateway.db", isolation_level=None)
    db.execute("UPDATE readings SET value = 'text' WHERE id = 2")  # a v that is no number
    db.close()
    b = batcher(state, max_readings=10)
    assert b.batch_once() == 2
    assert [r.value for r in decode(stored(state)[0]).readings] == [10.0, 10.25]
    assert read_counters(b.log.db)["invalid_readings"] == 1


def test_prune_keeps_what_any_consumer_still_needs(state: Path) -> None:
    db_path = state / "gateway.db"
    fill(db_path, 30)
    b = batcher(state, max_readings=10)
    b.batch_once()
    b.batch_once()
    keeper = OutboxKeeper(db_path, Consumers(True, [], ["mqtt", "http"]))
    b.log.mark_delivered("mqtt", 2)
    b.log.mark_delivered("http", 1)
    assert keeper.prune() == (20, 1)  # readings 1..20 are in batches; http still needs 2
    assert [x.seq for x in b.log.fetch_after(0, 10)] == [2]
    counters = read_counters(keeper._db)
    assert counters["pruned_readings"] == 20
    assert counters["pruned_batches"] == 1
    b.batch_once(force=True)  # the batcher goes on after pruning
    assert b.head.batched_id == 30


def test_delivered_readings_stay_for_the_deduplication_window(state: Path) -> None:
    """A board whose acknowledgement was lost sends its readings again, perhaps hours later;
    the store knows them as duplicates only while it still holds them."""
    db_path = state / "gateway.db"
    fill(db_path, 10, received_ms=NOW_MS)
    fill(db_path, 10, first=10, received_ms=NOW_MS + 30_000)
    now = [NOW_MS + 59_000]
    keeper = OutboxKeeper(
        db_path, Consumers(False, ["file"], []), keep_delivered_ms=60_000, clock_ms=lambda: now[0]
    )
    Outbox(db_path, "file").mark_delivered(20)
    assert keeper.prune() == (0, 0)
    now[0] = NOW_MS + 60_000
    assert keeper.prune() == (10, 0)
    now[0] = NOW_MS + 90_000
    assert keeper.prune() == (10, 0)
    # Over the disk budget, room comes first: delivered readings go whatever their age.
    fill(db_path, 5, first=20, received_ms=now[0])
    Outbox(db_path, "file").mark_delivered(25)
    assert keeper.prune() == (0, 0)
    assert keeper.prune(keep=False) == (5, 0)
    # Gone from the store means a repeat would be stored again: hence the window.
    writer = StoreWriter(db_path)
    try:
        again = Reading("aq-0", "pm2_5", "ug/m3", "v", 10.0, NOW_MS)
        (result,) = writer.commit([ReadingsJob([again], None, None, NOW_MS + 90_000)])
    finally:
        writer.close()
    assert result == SubmitResult(stored=1, duplicates=0)


def test_drop_oldest_drops_whole_batches_and_counts_them(state: Path) -> None:
    db_path = state / "gateway.db"
    fill(db_path, 20_000)
    b = batcher(state, max_readings=1000)
    while b.batch_once():
        pass
    keeper = OutboxKeeper(db_path, Consumers(True, [], ["mqtt"]), policy="drop_oldest")
    keeper.prune()  # readings are all in batches now
    used = keeper.used_bytes
    keeper.max_bytes = used // 2
    readings, batches = keeper.enforce()
    assert keeper.used_bytes <= keeper.max_bytes
    assert batches > 0
    assert readings == batches * 1000
    left = [x.seq for x in b.log.fetch_after(0, 100)]
    assert left[0] == batches + 1
    assert left[-1] == 20
    counters = read_counters(keeper._db)
    assert counters["dropped_batches"] == batches
    assert counters["dropped_readings"] == readings


def test_refuse_policy_never_drops(state: Path) -> None:
    db_path = state / "gateway.db"
    fill(db_path, 5000)
    keeper = OutboxKeeper(db_path, Consumers(False, ["file"], []), max_bytes=1, policy="refuse")
    assert keeper.enforce() == (0, 0)
    assert keeper.prune() == (0, 0)  # the file uplink has delivered nothing yet
