"""Cutting a rollout into waves and reading the gateways' reports (fleet/rollouts.py)."""

from __future__ import annotations

import pytest

from fleet.rollouts import (
    BoardRef,
    Target,
    WaveSpec,
    fleet_passed,
    halted_by,
    parse_window,
    plan_waves,
    revert_source,
    select,
)


def fleet(count: int = 30) -> list[BoardRef]:
    return [
        BoardRef(
            f"b{i:03d}",
            site="takengon" if i % 2 else "tegal",
            gateway=f"gw{i % 3}",
            kind="air" if i % 5 else "water",
            tags=frozenset({"pilot"}) if i < 6 else frozenset(),
            running=4,
        )
        for i in range(count)
    ]


def test_target_filters_combine_and_a_list_adds() -> None:
    boards = fleet()
    air_tegal = select(boards, Target(sites=("tegal",), kinds=("air",)))
    assert air_tegal
    assert all(b.site == "tegal" and b.kind == "air" for b in air_tegal)
    listed = select(boards, Target(boards=("b001", "b005")))
    assert [b.board_id for b in listed] == ["b001", "b005"]
    assert {b.board_id for b in select(boards, Target(tags=("pilot",)))} == {
        f"b{i:03d}" for i in range(6)
    }
    with pytest.raises(ValueError, match="needs a target"):
        select(boards, Target())


def test_every_board_is_in_exactly_one_wave_and_canaries_spread_over_gateways() -> None:
    boards = fleet()
    plan = plan_waves(boards, WaveSpec(canary=3, percents=(25, 100), soak_s=60), seed="r1")
    assert sorted(plan.boards) == sorted(b.board_id for b in boards)
    assert len(plan.boards) == len(set(plan.boards))
    assert [len(w) for w in plan.waves] == [3, 7, 20]
    gateway_of = {b.board_id: b.gateway for b in boards}
    assert {gateway_of[b] for b in plan.waves[0]} == {"gw0", "gw1", "gw2"}
    for gateway, waves in plan.per_gateway.items():
        assert len(waves) == 3
        assert all(gateway_of[b] == gateway for w in waves for b in w.boards)
        assert all(w.soak_s == 60 for w in waves)
    assert plan_waves(boards, WaveSpec(canary=3, percents=(25, 100)), seed="r1").waves == (
        plan.waves
    )
    assert plan_waves(boards, WaveSpec(canary=3, percents=(25, 100)), seed="r2").waves != (
        plan.waves
    )


def test_wave_spec_is_checked() -> None:
    for bad in ({"percents": (50,)}, {"percents": (50, 25, 100)}, {"canary": -1}):
        with pytest.raises(ValueError, match=r"percentages|canary"):
            WaveSpec(**bad)


def test_a_wave_passes_fleet_wide_only_when_every_gateway_with_boards_in_it_says_so() -> None:
    plan = plan_waves(fleet(6), WaveSpec(canary=1, percents=(100,)), seed="x")
    canary_gw = next(g for g, w in plan.per_gateway.items() if w[0].boards)
    reports = {g: {"passed": -1} for g in plan.per_gateway}
    assert fleet_passed(plan.per_gateway, reports) == -1
    reports[canary_gw] = {"passed": 0}
    assert fleet_passed(plan.per_gateway, reports) == 0
    for g in plan.per_gateway:
        reports[g] = {"passed": 1}
    assert fleet_passed(plan.per_gateway, reports) == 1
    silent: dict[str, dict[str, int] | None] = dict(reports)
    silent[canary_gw] = None  # not heard from: nothing is known to have passed there
    assert fleet_passed(plan.per_gateway, silent) == -1


def test_a_halt_on_one_gateway_is_found() -> None:
    assert halted_by({"gw0": {"state": "running"}, "gw1": None}) is None
    assert halted_by({"gw0": {"state": "running"}, "gw1": {"state": "halted", "reason": "x"}}) == (
        "gw1",
        "x",
    )


def test_revert_source_is_the_release_most_boards_ran() -> None:
    assert revert_source({"a": 4, "b": 4, "c": 3}) == 4
    assert revert_source({}) == 0


def test_window_parsing() -> None:
    assert parse_window("23:00-01:30") == (1380, 90)
    assert parse_window(None) is None
    for bad in ("23:00", "25:00-01:00", "10:75-11:00", "x-y"):
        with pytest.raises(ValueError, match="HH:MM"):
            parse_window(bad)


def test_each_wave_may_soak_for_its_own_time() -> None:
    plan = plan_waves(fleet(), WaveSpec(canary=2, percents=(50, 100), soak_s=(3600, 900)), seed="s")
    assert plan.soak_s == (3600, 900, 900)
    for waves in plan.per_gateway.values():
        assert [w.soak_s for w in waves] == [3600, 900, 900]
    small = plan_waves(fleet(2), WaveSpec(canary=3, percents=(100,), soak_s=(1, 2, 3)), seed="s")
    assert small.soak_s == (1,)  # two canaries, no board left for a second wave
