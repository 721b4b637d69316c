"""Rollout actions on fleet.db (fleet/operations.py) and the documents the engine makes of
them (fleet/engine.py ``desired_for``), without a broker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet import keys as fleet_keys
from fleet.engine import FleetEngine
from fleet.operations import (
    RolloutError,
    RolloutRequest,
    abort_rollout,
    add_release,
    pause_rollout,
    resume_rollout,
    start_rollout,
)
from fleet.release import build_release, decode_release
from fleet.rollouts import Target, WaveSpec
from fleet.store import DB_NAME, FleetStore

PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, bytes]:
    """A fleet directory and two releases built in it (seq 1 and 2)."""
    base = tmp_path_factory.mktemp("ops")
    (base / "usb").mkdir()
    now = int(time.time()) - 60
    fleet_keys.init_fleet(base / "fleet", base / "usb" / "root.key", PASSPHRASE, now=now)
    first, _ = build_release(base / "fleet", version="0.3.0", now=now)
    second, _ = build_release(base / "fleet", version="0.3.1", now=now)
    return base / "fleet", first, second


@pytest.fixture
def fleet(built: tuple[Path, bytes, bytes], tmp_path: Path) -> Iterator[tuple[Path, FleetStore]]:
    import shutil

    fleet_dir = tmp_path / "fleet"
    shutil.copytree(built[0], fleet_dir)
    store = FleetStore(fleet_dir / DB_NAME)
    store.add_site("takengon", "Takengon")
    for gw in ("gw-1", "gw-2"):
        store.add_gateway(gw, "takengon", bytes(32))
    for i in range(8):
        store.enroll_board(f"b{i}", kind="air" if i < 6 else "water", site_id="takengon",
                           gateway_id="gw-1" if i % 2 else "gw-2")  # fmt: skip
    yield fleet_dir, store
    store.close()


def test_a_rollout_starts_with_a_revert_release_and_every_step_is_audited(
    built: tuple[Path, bytes, bytes], fleet: tuple[Path, FleetStore]
) -> None:
    fleet_dir, store = fleet
    _, first, second = built
    one = add_release(store, fleet_dir, first, operator="siti")
    two = add_release(store, fleet_dir, second, operator="siti")
    assert add_release(store, fleet_dir, first, operator="siti") == one  # again: no error
    # Every air board runs release one.
    store.set_desired_releases([f"b{i}" for i in range(6)], one)
    with store.transaction():
        store._db.execute("UPDATE boards SET running = ? WHERE kind = 'air'", (one,))
    request = RolloutRequest(
        release=two,
        target=Target(kinds=("air",)),
        waves=WaveSpec(canary=2, percents=(100,), soak_s=(60, 0)),
        rollout_id="r2",
    )
    rollout = start_rollout(store, fleet_dir, request, operator="siti")
    assert rollout.state == "running"
    assert rollout.revert is not None
    assert rollout.revert > two
    revert = decode_release(store.release_data(rollout.revert) or b"")
    assert revert.files == decode_release(first).files
    assert [len(w) for w in rollout.plan["waves"]] == [2, 4]
    assert rollout.previous == {f"b{i}": one for i in range(6)}

    engine = FleetEngine(fleet_dir, store, None)
    doc = engine.desired_for("gw-1")
    assert doc.rollout is not None
    assert (doc.rollout.release, doc.rollout.revert, doc.rollout.state) == (two, rollout.revert,
                                                                            "running")  # fmt: skip
    assert [w.soak_s for w in doc.rollout.waves] == [60, 0]
    assert {b for w in doc.rollout.waves for b in w.boards} == {"b1", "b3", "b5"}
    assert doc.boards["b1"].release == one  # outside the rollout's waves: what it ran
    assert doc.boards["b7"].release == 0  # a water board: not in it, none set
    assert set(doc.releases) == {one, two, rollout.revert}
    assert engine.publish() == []  # no broker link: nothing published

    with pytest.raises(RolloutError, match="unfinished rollout"):
        start_rollout(store, fleet_dir, RolloutRequest(two, Target(boards=("b1",))), operator="x")
    assert pause_rollout(store, "r2", operator="siti").state == "paused"
    with pytest.raises(RolloutError, match="cannot pause"):
        pause_rollout(store, "r2", operator="siti")
    assert resume_rollout(store, "r2", operator="siti").state == "running"
    assert abort_rollout(store, "r2", operator="siti").state == "aborted"
    doc = engine.desired_for("gw-2")
    assert doc.rollout is not None
    assert doc.rollout.state == "aborted"
    assert doc.boards["b0"].release == one

    actions = [(e.action, e.target, e.result) for e in store.audit_entries()]
    assert ("rollout.start", "r2", "ok") in actions
    assert ("rollout.pause", "r2", "ok") in actions
    assert ("rollout.resume", "r2", "ok") in actions
    assert ("rollout.abort", "r2", "ok") in actions
    assert any(a == "rollout.start" and r.startswith("error:") for a, _, r in actions)
    assert any(a == "rollout.pause" and r.startswith("error:") for a, _, r in actions)


def test_a_rollout_is_refused_what_it_cannot_do(
    built: tuple[Path, bytes, bytes], fleet: tuple[Path, FleetStore]
) -> None:
    fleet_dir, store = fleet
    _, _first, second = built
    two = add_release(store, fleet_dir, second, operator="siti")
    cases = {
        "holds no release 77": RolloutRequest(77, Target(kinds=("air",))),
        "needs a target": RolloutRequest(two, Target()),
        "no enrolled board": RolloutRequest(two, Target(kinds=("weather",))),
    }
    for message, request in cases.items():
        with pytest.raises(RolloutError, match=message):
            start_rollout(store, fleet_dir, request, operator="siti")
    # Boards run release 1, which the fleet does not hold: a halt could not take them back.
    with store.transaction():
        store._db.execute("UPDATE boards SET running = 1")
    with pytest.raises(RolloutError, match="does not hold"):
        start_rollout(store, fleet_dir, RolloutRequest(two, Target(kinds=("air",))), operator="s")
    with store.transaction():
        store._db.execute("UPDATE boards SET running = ?", (two,))
    with pytest.raises(RolloutError, match="runs release"):
        start_rollout(store, fleet_dir, RolloutRequest(two, Target(kinds=("air",))), operator="s")
    assert store.rollouts() == []
