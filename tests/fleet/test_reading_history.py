"""fleet.db's reading history: 15-minute buckets per board and quantity, written with the
running statistics, pruned with the health history, counted per day; and the migration of
a version 1 file that had none."""

from __future__ import annotations

import sqlite3
import statistics
from pathlib import Path

import pytest

from fleet import store as fleet_store
from fleet.records import ReadingBucket
from fleet.store import READING_BUCKET_MS, SCHEMA_VERSION, FleetStore, reading_bucket

#: 2025-06-15 00:00:00Z, a day's start (and so a bucket's).
DAY_MS = 1_749_945_600_000
MINUTE_MS = 60_000


@pytest.fixture
def store(tmp_path: Path) -> FleetStore:
    return FleetStore(tmp_path / "fleet.db")


def test_a_reading_falls_in_the_bucket_that_starts_at_or_before_it() -> None:
    assert reading_bucket(DAY_MS) == DAY_MS
    assert reading_bucket(DAY_MS + 15 * MINUTE_MS - 1) == DAY_MS
    assert reading_bucket(DAY_MS + 15 * MINUTE_MS) == DAY_MS + READING_BUCKET_MS
    assert READING_BUCKET_MS == 15 * MINUTE_MS


def test_readings_are_bucketed_with_count_mean_min_max(store: FleetStore) -> None:
    first = [12.0, 30.5, 18.25, 7.0]  # minutes 0, 4, 8, 12: one bucket
    second = [40.0, 41.0]  # minutes 15 and 29: the next
    store.add_readings(
        "b1", [("pm2_5", v, DAY_MS + i * 4 * MINUTE_MS) for i, v in enumerate(first)]
    )
    store.add_readings(
        "b1", [("pm2_5", second[0], DAY_MS + 15 * MINUTE_MS), ("pm10", 50.0, DAY_MS)]
    )
    store.add_readings("b1", [("pm2_5", second[1], DAY_MS + 29 * MINUTE_MS)])
    store.add_readings("b2", [("pm2_5", 99.0, DAY_MS)])

    found = store.reading_history("b1")
    assert [(b.quantity, b.start_ms, b.count) for b in found] == [
        ("pm10", DAY_MS, 1),
        ("pm2_5", DAY_MS, 4),
        ("pm2_5", DAY_MS + READING_BUCKET_MS, 2),
    ]
    bucket = found[1]
    assert bucket.mean == pytest.approx(statistics.mean(first), rel=1e-12)
    assert (bucket.min, bucket.max) == (min(first), max(first))
    assert found[2] == ReadingBucket("pm2_5", DAY_MS + READING_BUCKET_MS, 2, 40.5, 40.0, 41.0)


def test_history_since_a_time_keeps_the_bucket_that_holds_it(store: FleetStore) -> None:
    for minute in (0, 20, 40, 60):
        store.add_readings("b1", [("level", float(minute), DAY_MS + minute * MINUTE_MS)])
    since = DAY_MS + 35 * MINUTE_MS  # inside the bucket of minutes 30..44
    assert [b.mean for b in store.reading_history("b1", since_ms=since)] == [40.0, 60.0]


def test_readings_since_midnight_count_only_todays_buckets(store: FleetStore) -> None:
    store.add_readings("b1", [("fill", 10.0, DAY_MS - 1), ("fill", 11.0, DAY_MS)])
    store.add_readings("b2", [("level", 1.0, DAY_MS + 5), ("level", 1.1, DAY_MS + 6 * 3_600_000)])
    assert store.readings_since(DAY_MS) == 3
    assert store.readings_since(DAY_MS - 86_400_000) == 4
    assert store.readings_since(DAY_MS + 86_400_000) == 0


def test_a_failed_batch_leaves_no_history(store: FleetStore) -> None:
    with pytest.raises(ValueError, match="could not convert"):
        store.add_readings("b1", [("t", 1.0, DAY_MS), ("t", "x", DAY_MS)])  # type: ignore[list-item]
    assert store.reading_history("b1") == []
    assert store.readings_since(0) == 0


def test_pruning_drops_only_buckets_that_ended_before_the_cut(store: FleetStore) -> None:
    store.add_readings(
        "b1",
        [
            ("level", 1.0, DAY_MS),  # bucket 0 ends at 15 min
            ("level", 2.0, DAY_MS + 20 * MINUTE_MS),  # bucket 1 holds the cut
            ("level", 3.0, DAY_MS + 50 * MINUTE_MS),
        ],
    )
    store.add_health("b1", DAY_MS, {"battery": 3.9})
    cut = DAY_MS + 25 * MINUTE_MS
    # One health report, and bucket 0 from each of the two tables.
    assert store.prune_history(older_than_ms=cut) == 3
    assert [b.mean for b in store.reading_history("b1")] == [2.0, 3.0]
    assert store.readings_since(0) == 2
    assert store.prune_history(older_than_ms=cut) == 0


def test_a_version_1_file_migrates_with_its_data_and_takes_readings(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    with sqlite3.connect(path) as db:
        for statement in fleet_store._SCHEMA_V1.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("INSERT INTO sites (site_id, name, created_ms) VALUES ('s', 'S', 1)")
        db.execute("PRAGMA user_version = 1")
    db.close()

    store = FleetStore(path)
    assert not store.created
    assert store.schema_version() == SCHEMA_VERSION == 3
    assert [s.site_id for s in store.sites()] == ["s"]
    store.add_readings("b1", [("fill", 42.0, DAY_MS)])
    assert store.reading_history("b1") == [ReadingBucket("fill", DAY_MS, 1, 42.0, 42.0, 42.0)]
    assert store.readings_since(DAY_MS) == 1


def test_a_new_file_has_the_same_tables_as_a_migrated_one(tmp_path: Path) -> None:
    def tables(path: Path) -> list[tuple[str, str]]:
        with sqlite3.connect(path) as db:
            rows = db.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
        return [(str(name), " ".join(str(sql).split())) for name, sql in rows]

    FleetStore(tmp_path / "new.db").close()
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as db:
        for statement in fleet_store._SCHEMA_V1.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("PRAGMA user_version = 1")
    FleetStore(old).close()
    assert tables(old) == tables(tmp_path / "new.db")
