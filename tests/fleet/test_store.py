"""fleet.db through FleetStore: real SQLite files, one or two processes."""

from __future__ import annotations

import sqlite3
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fleet import audit
from fleet.errors import AlreadyExists, Conflict, FleetDbError, NotFound
from fleet.records import BoardReport, Rollout
from fleet.store import SCHEMA_VERSION, FleetStore

ROOT = Path(__file__).resolve().parents[2]
KEY = bytes(range(32))


@pytest.fixture
def store(tmp_path: Path) -> FleetStore:
    found = FleetStore(tmp_path / "fleet.db")
    found.add_site("north", "North bank", at_ms=1)
    found.add_gateway("gw1", "north", KEY, at_ms=2)
    return found


def test_new_file_is_wal_at_the_current_version(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    assert FleetStore(path).created
    assert not FleetStore(path).created
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_file_from_a_newer_release_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    FleetStore(path).close()
    sqlite3.connect(path).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = path.read_bytes()
    with pytest.raises(FleetDbError, match="newer"):
        FleetStore(path)
    assert path.read_bytes() == before


def test_another_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE readings (id INTEGER PRIMARY KEY)")
    with pytest.raises(FleetDbError, match="not a fleet database"):
        FleetStore(path)
    tables = sqlite3.connect(path).execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == [("readings",)]


def test_missing_file_is_an_error_when_not_creating(tmp_path: Path) -> None:
    with pytest.raises(FleetDbError, match="simpul fleet init"):
        FleetStore(tmp_path / "fleet.db", create=False)
    assert not (tmp_path / "fleet.db").exists()


def test_board_needs_a_known_site_and_a_gateway_of_that_site(store: FleetStore) -> None:
    with pytest.raises(NotFound, match="unknown site 'south'"):
        store.enroll_board("b1", kind="air", site_id="south", gateway_id="gw1")
    with pytest.raises(NotFound, match="unknown gateway 'gw9'"):
        store.enroll_board("b1", kind="air", site_id="north", gateway_id="gw9")
    store.add_site("south", "South")
    with pytest.raises(Conflict, match="at site 'north'"):
        store.enroll_board("b1", kind="air", site_id="south", gateway_id="gw1")
    store.enroll_board("b1", kind="air", site_id="north", gateway_id="gw1", tags=["roof"])
    with pytest.raises(AlreadyExists, match="already enrolled"):
        store.enroll_board("b1", kind="water", site_id="north", gateway_id="gw1")
    assert [b.board_id for b in store.boards()] == ["b1"]


def test_boards_filter_by_every_criterion_given(store: FleetStore) -> None:
    store.add_gateway("gw2", "north", KEY)
    store.enroll_board("a1", kind="air", site_id="north", gateway_id="gw1", tags=["roof"])
    store.enroll_board("a2", kind="air", site_id="north", gateway_id="gw2")
    store.enroll_board("w1", kind="water", site_id="north", gateway_id="gw1", tags=["river"])
    store.tag_board("a2", ["roof", "east"])
    assert [b.board_id for b in store.boards(kind="air")] == ["a1", "a2"]
    assert [b.board_id for b in store.boards(tag="roof")] == ["a1", "a2"]
    assert [b.board_id for b in store.boards(tag="roof", gateway_id="gw2")] == ["a2"]
    assert store.board("a2") is not None
    assert store.untag_board("a2", ["roof"]).tags == ("east",)
    store.retire_board("w1")
    assert [b.board_id for b in store.boards()] == ["a1", "a2"]
    assert [b.board_id for b in store.boards(include_retired=True)] == ["a1", "a2", "w1"]
    with pytest.raises(Conflict, match="already retired"):
        store.retire_board("w1")


def test_gateway_state_is_recorded_only_when_newer(store: FleetStore) -> None:
    store.enroll_board("b1", kind="air", site_id="north", gateway_id="gw1")
    report = BoardReport("b1", 100, 7, "confirmed", None, {"vbat": 3.9}, 90)
    strangers = store.record_state(
        "gw1", seq=5, at_ms=100, health={"load1": 0.5}, boards=[report, BoardReport("x", 1, 0)]
    )
    assert strangers == ["x"]
    older = BoardReport("b1", 200, 1, "failed", None, {"vbat": 1.0}, 199)
    assert store.record_state("gw1", seq=5, at_ms=200, health={}, boards=[older]) == []
    gateway, board = store.gateway("gw1"), store.board("b1")
    assert gateway is not None
    assert board is not None
    assert (gateway.state_seq, gateway.last_state) == (5, {"load1": 0.5})
    assert (board.running, board.ota_state, board.last_health) == (7, "confirmed", {"vbat": 3.9})
    assert [h.at_ms for h in store.health_history("b1")] == [90]


def test_health_history_keeps_at_most_the_rows_per_board(tmp_path: Path) -> None:
    store = FleetStore(tmp_path / "fleet.db", history_per_board=3)
    for at in range(10):
        store.add_health("b1", at, {"n": at})
        store.add_health("b2", at, {"n": at})
    assert [h.at_ms for h in store.health_history("b1")] == [7, 8, 9]
    assert [h.health for h in store.health_history("b2", limit=2)] == [{"n": 8}, {"n": 9}]


def test_prune_history_removes_only_older_reports(store: FleetStore) -> None:
    for at in (10, 20, 30, 40):
        store.add_health("b1", at, {"at": at})
    store.add_health("b2", 5, {"at": 5})
    assert store.prune_history(older_than_ms=30) == 3
    assert [h.at_ms for h in store.health_history("b1")] == [30, 40]
    assert store.health_history("b2") == []
    assert store.prune_history(older_than_ms=30) == 0


def test_reading_summaries_match_statistics(store: FleetStore) -> None:
    values = [12.5, 13.0, 11.75, 40.0, -3.25, 12.0, 12.5, 1e3, 0.001]
    # Two calls, out of time order: the statistics do not care, last_value follows time.
    store.add_readings("b1", [("water_m", v, 1000 + i) for i, v in enumerate(values[:5])])
    store.add_readings("b1", [("water_m", v, 900 - i) for i, v in enumerate(values[5:])])
    store.add_readings("b1", [("temp_c", 20.0, 5)])
    found = store.summary("b1", "water_m")
    assert found is not None
    assert found.count == len(values)
    assert found.mean == pytest.approx(statistics.mean(values), rel=1e-12)
    assert found.variance == pytest.approx(statistics.variance(values), rel=1e-12)
    assert found.stdev == pytest.approx(statistics.stdev(values), rel=1e-12)
    assert (found.min, found.max) == (min(values), max(values))
    assert (found.last_value, found.last_ms) == (-3.25, 1004)
    single = store.summary("b1", "temp_c")
    assert single is not None
    assert single.variance is None
    assert [s.quantity for s in store.summaries("b1")] == ["temp_c", "water_m"]


def test_add_readings_is_one_transaction(store: FleetStore) -> None:
    with pytest.raises(ValueError, match="could not convert"):
        store.add_readings("b1", [("t", 1.0, 1), ("t", "not a number", 2)])  # type: ignore[list-item]
    assert store.summary("b1", "t") is None


def test_one_open_alert_per_rule_and_subject(store: FleetStore) -> None:
    first, new = store.raise_alert("silent", "b1", "board", {"for_s": 600}, at_ms=10)
    again, new_again = store.raise_alert("silent", "b1", "board", {"for_s": 1200}, at_ms=20)
    assert (new, new_again) == (True, False)
    assert again.id == first.id
    assert again.detail == {"for_s": 1200}
    store.raise_alert("silent", "b2", "board", {}, at_ms=30)
    acked = store.acknowledge_alert(first.id, "alice", "truck on its way", at_ms=40)
    assert (acked.state, acked.acked_by, acked.note) == ("open", "alice", "truck on its way")
    cleared = store.clear_alert("silent", "b1", at_ms=50)
    assert cleared is not None
    assert (cleared.state, cleared.cleared_ms) == ("cleared", 50)
    assert store.clear_alert("silent", "b1") is None
    third, new = store.raise_alert("silent", "b1", "board", {}, at_ms=60)
    assert new
    assert third.id != first.id
    assert [a.subject for a in store.open_alerts()] == ["b2", "b1"]
    assert [a.id for a in store.recent_alerts(since_ms=20)] == [third.id, 2]
    with pytest.raises(NotFound):
        store.acknowledge_alert(999, "alice", "x")


def test_desired_seq_keeps_growing_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    with FleetStore(path) as store:
        assert store.next_desired_seq("gw1") == 1
        store.put_desired("gw1", 1, b"doc1")
        store.put_desired("gw1", 2, b"doc2")
    with FleetStore(path) as store:
        assert store.next_desired_seq("gw1") == 3
        with pytest.raises(Conflict, match="not above 2"):
            store.put_desired("gw1", 2, b"again")
        desired = store.desired("gw1")
        assert desired is not None
        assert (desired.seq, desired.doc) == (2, b"doc2")


def test_settings_and_releases_round_trip(store: FleetStore) -> None:
    store.put_setting("rules.silent_s", 900)
    store.put_setting("rules.levels", {"warn": [1, 2.5]})
    assert store.setting("rules.silent_s") == 900
    assert store.setting("absent", 7) == 7
    assert store.settings() == {"rules.levels": {"warn": [1, 2.5]}, "rules.silent_s": 900}
    store.add_release(3, "1.2.0", "esp32-air", b"\x00release")
    with pytest.raises(AlreadyExists):
        store.add_release(3, "1.2.0", "esp32-air", b"other")
    assert [(r.seq, r.size) for r in store.releases()] == [(3, 8)]
    assert store.release_data(3) == b"\x00release"


def test_rollouts_are_stored_as_given(store: FleetStore) -> None:
    rollout = Rollout(
        id="r1", release=3, revert=None, previous={"b1": 2}, state="running", reason=None,
        target={"kind": "air"}, plan=[["b1"]], limits={"failures": 0.1}, window=[60, 300],
        created_ms=1, updated_ms=1, operator="alice",
    )  # fmt: skip
    store.put_rollout(rollout)
    assert store.rollout("r1") == rollout
    store.put_rollout_boards("r1", [("b1", 0, "pending"), ("b2", 1, "pending")], at_ms=2)
    store.set_rollout_board_status("r1", "b1", "updating", at_ms=3)
    updated = store.update_rollout("r1", state="paused", reason="window", at_ms=4)
    assert (updated.state, updated.reason, updated.updated_ms) == ("paused", "window", 4)
    assert [(b.board_id, b.status) for b in store.rollout_boards("r1")] == [
        ("b1", "updating"),
        ("b2", "pending"),
    ]
    assert store.rollouts(states=["running"]) == []
    assert store.status().active_rollouts == 1
    with pytest.raises(NotFound):
        store.set_rollout_board_status("r1", "b9", "failed")


def test_transaction_groups_a_change_and_rolls_it_all_back(store: FleetStore) -> None:
    def change() -> None:
        with store.transaction():
            store.add_site("south", "South")
            store.append_audit("alice", "site.add", "south", {}, "ok")
            store.add_site("north", "again")

    with pytest.raises(AlreadyExists):
        change()
    assert store.site("south") is None
    assert store.audit_head() is None


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from fleet.store import FleetStore

    path, name, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    store = FleetStore(path)
    for i in range(n):
        store.add_readings("b1", [("level", float(i), i)])
        store.append_audit(name, "test.write", str(i), {"i": i}, "ok")
        store.add_health(name, i, {"i": i})
    """
)


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    FleetStore(path).close()
    n = 150
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), name, str(n)], cwd=ROOT)
        for name in ("serve", "cli")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    store = FleetStore(path)
    entries, head = store.audit_log()
    assert audit.verify(entries, head) == []
    assert len(entries) == 2 * n
    assert {e.operator for e in entries} == {"serve", "cli"}
    summary = store.summary("b1", "level")
    assert summary is not None
    assert summary.count == 2 * n  # no lost update: each read-modify-write was serialised
    both = [float(i) for i in range(n)] * 2
    assert summary.mean == pytest.approx(statistics.mean(both))
    assert summary.variance == pytest.approx(statistics.variance(both))
    assert len(store.health_history("serve")) == len(store.health_history("cli")) == n


def test_reads_see_one_moment_while_another_connection_writes(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    with FleetStore(path) as reader, FleetStore(path) as writer:
        writer.add_site("takengon", "Takengon")
        writer.add_gateway("gw-1", "takengon", bytes(32))
        with reader.reads():
            before = [b.board_id for b in reader.boards()]
            # A write lands in between two reads of the console's one snapshot...
            writer.enroll_board("tkn-air-0001", kind="air", site_id="takengon", gateway_id="gw-1")
            with reader.reads():  # nested: the same moment
                during = [b.board_id for b in reader.boards()]
            status = reader.status()
        # ...and is seen once the reads are over.
        after = [b.board_id for b in reader.boards()]
    assert before == during == []
    assert status.boards == 0
    assert after == ["tkn-air-0001"]
