"""The Rollouts, Alerts and Audit actions over a real fleet.db (``StoreBackend``): each changes
fleet.db through ``fleet.operations``/``fleet.inventory`` and appends its audit entry."""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet import keys as fleet_keys
from fleet.console.app import ConsoleApp
from fleet.console.backend import StoreBackend
from fleet.console.screens.confirm import ConfirmScreen
from fleet.console.screens.rollouts import RolloutsScreen
from fleet.errors import FleetError
from fleet.operations import RolloutRequest, add_release
from fleet.release import build_release
from fleet.rollouts import Target, WaveSpec
from fleet.store import DB_NAME, FleetStore
from gateway.control.messages import Limits
from tests.console.conftest import SIZE
from tests.console.fakes import NOW_MS, until

PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fleet directory (root key made) holding releases 1 and 2 in its fleet.db."""
    base = tmp_path_factory.mktemp("console-ops")
    (base / "usb").mkdir()
    now = int(time.time()) - 60
    fleet_dir = base / "fleet"
    fleet_keys.init_fleet(fleet_dir, base / "usb" / "root.key", PASSPHRASE, now=now)
    with FleetStore(fleet_dir / DB_NAME) as store:
        for version in ("0.3.0", "0.3.1"):
            data, _ = build_release(fleet_dir, version=version, now=now)
            add_release(store, fleet_dir, data, operator="siti")
    return fleet_dir


@pytest.fixture
def backend(built: Path, tmp_path: Path) -> Iterator[StoreBackend]:
    """Six air boards on two gateways running release 1, over a copy of the built fleet."""
    fleet_dir = tmp_path / "fleet"
    shutil.copytree(built, fleet_dir)
    with FleetStore(fleet_dir / DB_NAME) as store:
        store.add_site("takengon", "Takengon")
        for gw in ("gw-1", "gw-2"):
            store.add_gateway(gw, "takengon", bytes(32))
        for i in range(6):
            store.enroll_board(f"b{i}", kind="air", site_id="takengon",
                               gateway_id="gw-1" if i % 2 else "gw-2")  # fmt: skip
        with store.transaction():
            store._db.execute("UPDATE boards SET running = 1")
    backend = StoreBackend(fleet_dir, operator="ana")
    yield backend
    backend.close()


def _request() -> RolloutRequest:
    return RolloutRequest(
        release=2,
        target=Target(kinds=("air",)),
        waves=WaveSpec(canary=2, percents=(100,), soak_s=60),
        limits=Limits(0.25, 3600, 1800, 3),
        rollout_id="r2-test",
    )


def _audit(backend: StoreBackend) -> list[tuple[str, str, str, str]]:
    with FleetStore(backend.path) as store:
        return [(e.operator, e.action, e.target, e.result) for e in store.audit_entries()]


def test_start_pause_resume_abort_change_fleet_db_and_are_audited(
    backend: StoreBackend,
) -> None:
    said = backend.start_rollout(_request())
    assert said == "rollout r2-test started: release 2 to 6 boards in 2 waves"
    (view,) = backend.rollouts()
    assert (view.rollout_id, view.state, view.release, view.revert_from) == (
        "r2-test", "running", 2, 1
    )  # fmt: skip
    assert [(w.boards, w.pending) for w in view.waves] == [(2, 2), (4, 4)]
    assert view.current_wave == 0
    assert view.limits.failures == 0.25

    assert backend.pause_rollout("r2-test") == "rollout r2-test paused: no new wave starts"
    assert backend.rollouts()[0].state == "paused"
    with pytest.raises(FleetError, match="is paused: it cannot pause"):
        backend.pause_rollout("r2-test")
    assert backend.resume_rollout("r2-test") == "rollout r2-test runs on"
    assert backend.rollouts()[0].state == "running"
    assert backend.abort_rollout("r2-test").startswith("rollout r2-test aborted: boards that")
    with FleetStore(backend.path) as store:
        aborted = store.rollout("r2-test")
        assert aborted is not None
        assert (aborted.state, aborted.reason) == ("aborted", "abort by ana")

    actions = [entry for entry in _audit(backend) if entry[0] == "ana"]
    assert actions == [
        ("ana", "rollout.start", "r2-test", "ok"),
        ("ana", "rollout.pause", "r2-test", "ok"),
        ("ana", "rollout.pause", "r2-test", "error: rollout r2-test is paused: it cannot pause"),
        ("ana", "rollout.resume", "r2-test", "ok"),
        ("ana", "rollout.abort", "r2-test", "ok"),
    ]


def test_a_refused_start_says_why(backend: StoreBackend) -> None:
    with pytest.raises(FleetError, match="holds no release 9"):
        backend.start_rollout(RolloutRequest(9, Target(kinds=("air",))))
    assert backend.rollouts() == ()


def test_a_halted_rollout_carries_its_rule_boards_and_numbers(backend: StoreBackend) -> None:
    backend.start_rollout(_request())
    with FleetStore(backend.path) as store:
        canaries = [b.board_id for b in store.rollout_boards("r2-test") if b.wave == 0]
        store.set_rollout_board_status("r2-test", canaries[0], "failed")
        store.set_rollout_board_status("r2-test", canaries[1], "confirmed")
        store.update_rollout(
            "r2-test",
            state="halted",
            reason=f"gw-1: wave 0: 1 of 2 boards failed: {canaries[0]} (rejected)",
        )
    (view,) = backend.rollouts()
    assert view.halt is not None
    assert (view.halt.by, view.halt.rule, view.halt.wave) == ("gw-1", "failures", 0)
    assert view.halt.boards == (canaries[0],)
    assert (view.halt.failed, view.halt.wave_boards, view.halt.threshold) == (1, 2, 0.25)
    assert view.halt.summary == (
        f"wave 0: 1 of 2 boards failed, more than the 25% allowed ({canaries[0]})"
    )
    assert view.took == 1  # the confirmed canary
    assert (view.waves[0].confirmed, view.waves[0].failed) == (1, 1)


def test_alerts_open_and_cleared_and_acknowledged_with_an_audit_entry(
    backend: StoreBackend,
) -> None:
    with FleetStore(backend.path) as store:
        stale, _ = store.raise_alert("gateway_stale", "gw-1", "gateway", {"silent_s": 900})
        store.append_audit("fleet-rules", "alert.raised", "gateway_stale:gw-1",
                           {"severity": "critical"}, "ok")  # fmt: skip
        low, _ = store.raise_alert("battery_low", "b1", "board", {"battery": 3.3}, at_ms=NOW_MS)
        store.raise_alert("reboot_loop", "b2", "board", {})
        store.clear_alert("reboot_loop", "b2")
    view = backend.alerts(recent_limit=10)
    assert [(a.alert_id, a.severity) for a in view.open] == [
        (stale.id, "critical"),
        (low.id, "warning"),
    ]
    assert [a.rule for a in view.recent] == ["reboot_loop"]

    with pytest.raises(ValueError, match="needs a note"):
        backend.acknowledge_alert(low.id, "  ")
    said = backend.acknowledge_alert(low.id, "panel cleaned")
    assert said == f"alert {low.id} (battery_low on b1) acknowledged by ana"
    with FleetStore(backend.path) as store:
        acked = store.alert(low.id)
    assert acked is not None
    assert (acked.acked_by, acked.note, acked.state) == ("ana", "panel cleaned", "open")
    acks = [e for e in _audit(backend) if e[1] == "alert.ack"]
    assert acks == [
        ("ana", "alert.ack", str(low.id),
         "error: an acknowledgement needs a note: say what is being done about it"),
        ("ana", "alert.ack", str(low.id), "ok"),
    ]  # fmt: skip


def test_audit_filters_newest_first_and_verifies_the_chain(backend: StoreBackend) -> None:
    backend.start_rollout(_request())
    backend.pause_rollout("r2-test")
    view = backend.audit("rollout ana", limit=10)
    assert [(e.action, e.operator) for e in view.entries] == [
        ("rollout.pause", "ana"),
        ("rollout.start", "ana"),
    ]
    assert view.intact
    assert view.total == len(_audit(backend))
    assert len(backend.audit(None, limit=3).entries) == 3
    with sqlite3.connect(backend.path) as db:
        db.execute("UPDATE audit SET operator = 'mallory' WHERE action = 'rollout.start'")
    broken = backend.audit(None, limit=10)
    assert not broken.intact
    assert any("was edited" in p for p in broken.problems)


async def test_aborting_from_the_console_changes_fleet_db(backend: StoreBackend) -> None:
    backend.start_rollout(_request())
    app = ConsoleApp(backend, refresh_s=0.1, clock=lambda: NOW_MS)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.snapshots_received > 0)
        await pilot.press("o")
        await until(lambda: isinstance(app.screen, RolloutsScreen) and bool(app.screen.rollouts))
        await pilot.press("x")
        await until(lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(lambda: bool(app.actions_done))
        assert app.actions_done[0].error is None
    with FleetStore(backend.path) as store:
        rollout = store.rollout("r2-test")
    assert rollout is not None
    assert rollout.state == "aborted"
    assert ("ana", "rollout.abort", "r2-test", "ok") in _audit(backend)
