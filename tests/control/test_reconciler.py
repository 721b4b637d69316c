"""The rollout's waves as the gateway drives them (gateway/control/reconciler.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway.control.messages import BoardEntry, Desired, Limits, RolloutPlan, Wave
from gateway.control.reconciler import BoardView, Progress, in_window, reconcile

T0 = 1_780_000_000_000
S = 1000
OLD, NEW, REVERT = 4, 5, 6


def plan(**changes: Any) -> RolloutPlan:
    base = RolloutPlan(
        id="r1",
        release=NEW,
        revert=REVERT,
        state="running",
        waves=(Wave(("c1",), 60), Wave(("a1", "a2"), 60), Wave(("b1", "b2"), 0)),
        limits=Limits(failures=0.0, confirm_s=600, silent_s=300, reboots=2),
    )
    return dataclasses.replace(base, **changes)


def doc(rollout: RolloutPlan | None = None) -> Desired:
    boards = {b: BoardEntry("air", OLD) for b in ("c1", "a1", "a2", "b1", "b2", "x1")}
    return Desired("s", "g", 1, 0, boards, (OLD, NEW, REVERT), rollout)


def on(release: int, state: str = "confirmed", at: int = T0, boots: int = 1) -> BoardView:
    return BoardView(release, state, None, at, at, boots)


def test_without_a_rollout_every_board_gets_its_own_release() -> None:
    out = reconcile(doc(), {}, None, T0)
    assert out.desired == dict.fromkeys(("c1", "a1", "a2", "b1", "b2", "x1"), OLD)
    assert out.progress is None


def test_the_canary_wave_starts_alone() -> None:
    out = reconcile(doc(plan()), {}, None, T0)
    assert out.desired["c1"] == NEW
    assert {b for b, r in out.desired.items() if r == NEW} == {"c1"}
    assert out.progress is not None
    assert out.progress.wave == 0
    assert ("wave_started", {"wave": 0, "boards": 1}) in out.events


def test_a_wave_passes_only_after_its_soak_then_the_next_starts() -> None:
    d = doc(plan())
    progress = reconcile(d, {}, None, T0).progress
    boards = {"c1": on(NEW, at=T0 + 10 * S)}
    out = reconcile(d, boards, progress, T0 + 10 * S)
    assert out.progress is not None
    assert out.progress.boards["c1"].status == "confirmed"
    soaking = reconcile(d, boards, out.progress, T0 + 69 * S)
    assert soaking.progress is not None
    assert soaking.progress.wave == 0
    assert soaking.desired["a1"] == OLD
    boards["c1"] = on(NEW, at=T0 + 65 * S)  # it keeps reporting
    passed = reconcile(d, boards, soaking.progress, T0 + 71 * S)
    assert passed.progress is not None
    assert passed.progress.wave == 1
    assert passed.desired["a1"] == passed.desired["a2"] == NEW
    assert passed.desired["b1"] == OLD


def test_a_rolled_back_canary_halts_and_no_later_wave_is_told() -> None:
    d = doc(plan())
    progress = reconcile(d, {}, None, T0).progress
    boards = {"c1": on(OLD, "rolled_back", at=T0 + 20 * S)}
    out = reconcile(d, boards, progress, T0 + 20 * S)
    assert out.progress is not None
    assert out.progress.state == "halted"
    assert "c1 (rolled_back" in (out.progress.reason or "")
    assert all(release == OLD for release in out.desired.values())
    # And it stays halted, whatever time passes.
    later = reconcile(d, boards, out.progress, T0 + 10_000 * S)
    assert all(release == OLD for release in later.desired.values())


def test_a_silent_canary_after_confirming_halts_and_goes_to_the_revert_release() -> None:
    d = doc(plan())
    progress = reconcile(d, {}, None, T0).progress
    boards = {"c1": on(NEW, at=T0 + 10 * S)}
    progress = reconcile(d, boards, progress, T0 + 10 * S).progress
    out = reconcile(d, boards, progress, T0 + 311 * S)
    assert out.progress is not None
    assert out.progress.state == "halted"
    assert "silent" in (out.progress.reason or "")
    assert out.desired["c1"] == REVERT
    assert out.desired["a1"] == OLD
    done = reconcile(d, {"c1": on(REVERT)}, out.progress, T0 + 400 * S)
    assert done.progress is not None
    assert done.progress.boards["c1"].status == "reverted"


def test_reboots_after_confirming_halt() -> None:
    d = doc(plan())
    progress = reconcile(d, {}, None, T0).progress
    progress = reconcile(d, {"c1": on(NEW, boots=3)}, progress, T0 + 5 * S).progress
    calm = reconcile(d, {"c1": on(NEW, at=T0 + 6 * S, boots=5)}, progress, T0 + 6 * S)
    assert calm.progress is not None
    assert calm.progress.state == "running"
    loop = reconcile(d, {"c1": on(NEW, at=T0 + 7 * S, boots=6)}, progress, T0 + 7 * S)
    assert loop.progress is not None
    assert loop.progress.state == "halted"


def test_not_confirming_in_time_is_a_failure() -> None:
    d = doc(plan())
    progress = reconcile(d, {}, None, T0).progress
    waiting = reconcile(d, {"c1": on(OLD, "downloading")}, progress, T0 + 600 * S)
    assert waiting.progress is not None
    assert waiting.progress.state == "running"
    late = reconcile(d, {"c1": on(OLD, "downloading")}, progress, T0 + 601 * S)
    assert late.progress is not None
    assert late.progress.state == "halted"


def test_failures_within_the_threshold_let_the_wave_pass() -> None:
    d = doc(plan(limits=Limits(failures=0.5, confirm_s=600, silent_s=0, reboots=0)))
    progress = reconcile(d, {}, None, T0).progress
    progress = reconcile(d, {"c1": on(NEW)}, progress, T0 + 61 * S).progress
    progress = reconcile(d, {"c1": on(NEW)}, progress, T0 + 122 * S).progress
    assert progress is not None
    assert progress.wave == 1
    boards = {
        "c1": on(NEW),
        "a1": on(OLD, "rejected", at=T0 + 130 * S),
        "a2": on(NEW, at=T0 + 130 * S),
    }
    progress = reconcile(d, boards, progress, T0 + 130 * S).progress
    out = reconcile(d, boards, progress, T0 + 191 * S)
    assert out.progress is not None
    assert out.progress.state == "running"
    assert out.progress.wave == 2


def test_an_empty_wave_waits_for_the_fleet() -> None:
    d = doc(plan(waves=(Wave((), 60), Wave(("a1",), 0))))
    out = reconcile(d, {}, None, T0 + 1000 * S)
    assert out.progress is not None
    assert out.progress.wave == 0
    assert out.desired["a1"] == OLD
    fleet_says = doc(plan(waves=(Wave((), 60), Wave(("a1",), 0)), passed=0))
    out = reconcile(fleet_says, {}, out.progress, T0 + 1001 * S)
    assert out.desired["a1"] == NEW


def test_a_paused_rollout_starts_no_new_wave() -> None:
    d = doc(plan())
    progress = reconcile(d, {}, None, T0).progress
    progress = reconcile(d, {"c1": on(NEW, at=T0 + 10 * S)}, progress, T0 + 10 * S).progress
    paused = doc(plan(state="paused"))
    out = reconcile(paused, {"c1": on(NEW, at=T0 + 200 * S)}, progress, T0 + 200 * S)
    assert out.progress is not None
    assert out.progress.wave == 0
    assert out.desired["c1"] == NEW
    assert out.desired["a1"] == OLD


def test_the_fleets_abort_reverts_boards_that_took_the_release() -> None:
    d = doc(plan())
    progress = reconcile(d, {}, None, T0).progress
    aborted = doc(plan(state="aborted"))
    out = reconcile(aborted, {"c1": on(NEW)}, progress, T0 + 5 * S)
    assert out.desired["c1"] == REVERT
    assert out.desired["a1"] == OLD


def test_progress_survives_a_restart_as_json() -> None:
    d = doc(plan())
    progress = reconcile(d, {"c1": on(NEW)}, reconcile(d, {}, None, T0).progress, T0 + S).progress
    assert progress is not None
    again = Progress.from_json(progress.to_json())
    assert again == progress


def test_maintenance_window_across_midnight() -> None:
    day = 1_780_000_000_000 // 86_400_000 * 86_400_000
    assert in_window((1380, 60), day + 1400 * 60_000)
    assert in_window((1380, 60), day + 30 * 60_000)
    assert not in_window((1380, 60), day + 600 * 60_000)
    assert in_window(None, day)
    d = doc(plan(window=(0, 1)))
    out = reconcile(d, {}, None, day + 600 * 60_000)
    assert out.progress is not None
    assert out.progress.wave == -1
    assert out.desired["c1"] == OLD
