"""Each rule fires on its condition and stays quiet just short of it (default thresholds)."""

from __future__ import annotations

import pytest

from fleet.health import Finding, Thresholds, UplinkState
from fleet.health import rules as r
from tests.fleet_health.support import HOUR, MIN, NOW, backlog, baseline, board, gateway, sample

T = Thresholds()


# --- stale ----------------------------------------------------------------------------


def test_stale_after_more_than_stale_cycles_of_silence() -> None:
    limit = T.stale_cycles * 60_000
    assert r.stale(board(last_seen_ms=NOW - limit), T, NOW) is None
    found = r.stale(board(last_seen_ms=NOW - limit - 1), T, NOW)
    assert found is not None
    assert found.rule == "stale"
    assert found.subject == "tgl-air-0001"
    assert found.subject_kind == "board"
    assert found.detail["cycles"] == 5.0
    assert found.detail["cycle_s"] == 60.0


def test_stale_counts_the_boards_own_cycle() -> None:
    slow = board(cycle_s=600.0, last_seen_ms=NOW - 40 * MIN)
    assert r.stale(slow, T, NOW) is None
    assert r.stale(board(last_seen_ms=NOW - 40 * MIN), T, NOW) is not None


def test_a_board_never_seen_is_not_stale() -> None:
    assert r.stale(board(last_seen_ms=None), T, NOW) is None


# --- reboot loop ----------------------------------------------------------------------


def test_reboot_loop_when_boot_count_grows_by_reboot_boots_within_the_window() -> None:
    loop = board(
        health=(sample(50, boot_count=10), sample(30, boot_count=11), sample(5, boot_count=13))
    )
    found = r.reboot_loop(loop, T, NOW)
    assert found is not None
    assert found.severity == "critical"
    assert found.detail["boots"] == 3
    below = board(health=(sample(50, boot_count=10), sample(5, boot_count=12)))
    assert r.reboot_loop(below, T, NOW) is None


def test_boots_before_the_window_are_not_counted() -> None:
    old = board(
        health=(sample(61, boot_count=5), sample(50, boot_count=10), sample(5, boot_count=12))
    )
    assert r.reboot_loop(old, T, NOW) is None


def test_reboot_loop_on_repeated_bad_reset_causes() -> None:
    wdt = board(
        health=(
            sample(40, boot_count=10, reset_cause="wdt"),
            sample(35, boot_count=10, reset_cause="wdt"),
            sample(20, boot_count=11, reset_cause="brownout"),
        )
    )
    found = r.reboot_loop(wdt, T, NOW)
    assert found is not None
    assert found.detail["bad_boots"] == 2
    assert found.detail["bad_causes"] == {"wdt": 1, "brownout": 1}
    once = board(
        health=(
            sample(40, boot_count=10, reset_cause="wdt"),
            sample(35, boot_count=10, reset_cause="wdt"),  # the same boot, reported again
            sample(20, boot_count=11, reset_cause="power_on"),
        )
    )
    assert r.reboot_loop(once, T, NOW) is None


# --- battery --------------------------------------------------------------------------


def test_battery_low_below_the_threshold() -> None:
    found = r.battery_low(board(health=(sample(5, battery=3.39),)), T, NOW)
    assert found is not None
    assert found.detail["battery_v"] == 3.39
    assert r.battery_low(board(health=(sample(5, battery=3.4),)), T, NOW) is None


def test_battery_low_uses_the_newest_report_then_the_latest_reading() -> None:
    recovered = board(health=(sample(20, battery=3.2), sample(5, battery=3.9)))
    assert r.battery_low(recovered, T, NOW) is None
    assert r.battery_low(board(latest={"battery": 3.3}), T, NOW) is not None


def test_an_open_divider_is_not_a_low_battery() -> None:
    assert r.battery_low(board(health=(sample(5, battery=0.0),)), T, NOW) is None


def _draining(v_per_h: float, hours: int = 6, start_v: float = 4.0) -> tuple[object, ...]:
    return tuple(sample(60 * (hours - h), battery=start_v - v_per_h * h) for h in range(hours + 1))


@pytest.mark.parametrize(("v_per_h", "fires"), [(0.0499, False), (0.0501, True)])
def test_battery_drain_above_the_floor_with_no_history(v_per_h: float, fires: bool) -> None:
    found = r.battery_drain(board(health=_draining(v_per_h)), T, NOW)
    assert (found is not None) is fires
    if found is not None:
        assert found.detail["drain_v_per_h"] == pytest.approx(v_per_h, abs=1e-4)
        assert found.detail["baseline_v_per_h"] == 0.0


def test_battery_drain_is_judged_against_the_boards_own_baseline() -> None:
    # A board that always drains 0.08 V/h (no solar): fast, but its normal.
    steady = board(health=_draining(0.08, hours=24))
    assert r.battery_drain(steady, T, NOW) is None
    # 18 hours at 0.03 V/h, then 6 hours at 0.2 V/h: far beyond twice its long slope.
    slow = [sample(60 * (24 - h), battery=4.0 - 0.03 * h) for h in range(18)]
    fast = [sample(60 * (6 - h), battery=4.0 - 0.54 - 0.2 * h) for h in range(7)]
    found = r.battery_drain(board(health=(*slow, *fast)), T, NOW)
    assert found is not None
    drain, base = found.detail["drain_v_per_h"], found.detail["baseline_v_per_h"]
    assert isinstance(drain, float)
    assert isinstance(base, float)
    assert drain == pytest.approx(0.2, abs=1e-4)
    assert 0 < base < drain / T.drain_factor


def test_battery_drain_needs_enough_reports() -> None:
    few = tuple(sample(60 * (6 - h), battery=4.0 - 0.5 * h) for h in (4, 5, 6))
    assert r.battery_drain(board(health=few), T, NOW) is None


# --- sensor errors --------------------------------------------------------------------


def test_sensor_errors_when_one_sensors_faults_grow_by_the_minimum() -> None:
    grows = board(
        health=(
            sample(50, sensor_errors={"bme280": {"timeout": 1}}),
            sample(10, sensor_errors={"bme280": {"timeout": 2, "checksum": 2}}),
        )
    )
    found = r.sensor_errors(grows, T, NOW)
    assert found is not None
    assert found.detail["errors"] == {"bme280": {"timeout": 1, "checksum": 2}}
    two = board(
        health=(
            sample(50, sensor_errors={"bme280": {"timeout": 1}, "pms5003": {"timeout": 1}}),
            sample(10, sensor_errors={"bme280": {"timeout": 3}, "pms5003": {"timeout": 3}}),
        )
    )
    assert r.sensor_errors(two, T, NOW) is None


def test_sensor_errors_count_again_from_zero_after_a_reboot() -> None:
    rebooted = board(
        health=(
            sample(50, sensor_errors={"pms5003": {"timeout": 7}}),
            sample(30, sensor_errors={}),
            sample(10, sensor_errors={"pms5003": {"timeout": 3}}),
        )
    )
    found = r.sensor_errors(rebooted, T, NOW)
    assert found is not None
    assert found.detail["errors"] == {"pms5003": {"timeout": 3}}


def test_old_sensor_errors_outside_the_window_are_quiet() -> None:
    old = board(
        health=(
            sample(120, sensor_errors={}),
            sample(70, sensor_errors={"pms5003": {"timeout": 9}}),
            sample(10, sensor_errors={"pms5003": {"timeout": 9}}),
        )
    )
    assert r.sensor_errors(old, T, NOW) is None


# --- heap, buffer, dropped ------------------------------------------------------------


@pytest.mark.parametrize(
    ("free", "low_water", "fires"),
    [(16_384, 8_192, False), (16_383, 8_192, True), (16_384, 8_191, True)],
)
def test_heap_low(free: int, low_water: int, fires: bool) -> None:
    found = r.heap_low(board(health=(sample(5, heap_free=free, heap_min=low_water),)), T, NOW)
    assert (found is not None) is fires


@pytest.mark.parametrize(
    ("buffered", "fires"),
    [
        ((10, 20, 30, 40), True),
        ((5, 10, 15, 20), True),
        ((5, 10, 15, 19), False),  # below buffer_min
        ((10, 20, 30, 30), False),  # the last report did not rise
        ((20, 10, 20, 30), False),  # two rises in a row only
        ((20, 30, 40), False),  # too few reports
    ],
)
def test_buffer_growing(buffered: tuple[int, ...], fires: bool) -> None:
    health = tuple(sample(10 * (len(buffered) - i), buffered=b) for i, b in enumerate(buffered))
    assert (r.buffer_growing(board(health=health), T, NOW) is not None) is fires


def test_readings_dropped_within_the_window() -> None:
    dropped = board(health=(sample(50, dropped=0), sample(10, dropped=1)))
    found = r.readings_dropped(dropped, T, NOW)
    assert found is not None
    assert found.detail["dropped"] == 1
    before = board(health=(sample(120, dropped=0), sample(59, dropped=4), sample(10, dropped=4)))
    assert r.readings_dropped(before, T, NOW) is None


# --- implausible ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "fires"),
    [
        ("temperature", 85.0, False),
        ("temperature", 85.1, True),
        ("temperature", -40.1, True),
        ("humidity", 100.5, True),
        ("pressure", 29_999.0, True),
        ("pm2_5", 1000.0, False),
        ("pm2_5", -1.0, True),
        ("distance", 0.19, True),
        ("fill", 100.0, False),
        ("battery", 6.6, True),
        ("battery", 0.0, True),
        ("wind", 1e9, False),  # not a quantity simpul knows
    ],
)
def test_implausible_outside_the_physical_range(name: str, value: float, fires: bool) -> None:
    found = r.implausible(board(latest={name: value}), T, NOW)
    assert (found is not None) is fires
    if found is not None:
        readings = found.detail["readings"]
        assert isinstance(readings, dict)
        assert readings[name]["value"] == value


def test_implausible_far_from_the_boards_baseline() -> None:
    base = {"temperature": baseline(25.0, 2.0)}  # k=6: 25 +- 12
    assert r.implausible(board(latest={"temperature": 37.0}, baselines=base), T, NOW) is None
    found = r.implausible(board(latest={"temperature": 37.01}, baselines=base), T, NOW)
    assert found is not None
    readings = found.detail["readings"]
    assert isinstance(readings, dict)
    assert readings["temperature"]["sigmas"] == 6.0


def test_a_young_baseline_does_not_judge() -> None:
    young = {"temperature": baseline(25.0, 2.0, count=99)}
    assert r.implausible(board(latest={"temperature": 60.0}, baselines=young), T, NOW) is None


def test_event_driven_quantities_are_not_judged_against_the_baseline() -> None:
    smoke = {"pm2_5": baseline(20.0, 5.0)}
    assert r.implausible(board(latest={"pm2_5": 300.0}, baselines=smoke), T, NOW) is None
    judged = Thresholds(baseline_quantities=("pm2_5",))
    assert r.implausible(board(latest={"pm2_5": 300.0}, baselines=smoke), judged, NOW)


def test_a_steady_baseline_is_judged_at_the_quantitys_resolution() -> None:
    steady = {"temperature": baseline(25.0, 0.0)}  # resolution 0.5: 25 +- 3
    assert r.implausible(board(latest={"temperature": 28.0}, baselines=steady), T, NOW) is None
    assert r.implausible(board(latest={"temperature": 28.01}, baselines=steady), T, NOW)


# --- gateways -------------------------------------------------------------------------


def test_gateway_stale() -> None:
    limit = T.gateway_stale_intervals * 30_000
    assert r.gateway_stale(gateway(last_state_ms=NOW - limit), T, NOW) is None
    found = r.gateway_stale(gateway(last_state_ms=NOW - limit - 1), T, NOW)
    assert found is not None
    assert (found.subject, found.subject_kind, found.severity) == (
        "tegal/gw1",
        "gateway",
        "critical",
    )


@pytest.mark.parametrize(
    ("values", "fires"),
    [
        ((1000, 1100, 1200, 1300, 1400, 1500), True),
        ((500, 600, 700, 800, 900, 1000), True),
        ((500, 600, 700, 800, 900, 999), False),  # below backlog_min
        ((1500, 1100, 1200, 1300, 1400, 1500), False),  # four rises only
        ((1100, 1200, 1300, 1400, 1500), False),  # too few states
    ],
)
def test_backlog_growing(values: tuple[int, ...], fires: bool) -> None:
    found = r.backlog_growing(gateway(backlog=backlog(*values)), T, NOW)
    assert (found is not None) is fires


def test_disk_full_below_the_free_fraction() -> None:
    assert r.disk_full(gateway(disk_free=100, disk_total=1000), T, NOW) is None
    found = r.disk_full(gateway(disk_free=99, disk_total=1000), T, NOW)
    assert found is not None
    assert found.detail["free_fraction"] == 0.099
    assert r.disk_full(gateway(disk_free=None), T, NOW) is None


def test_uplink_down() -> None:
    up = UplinkState(up=True, delivered=5, lag=0)
    down = UplinkState(up=False, delivered=3, lag=40)
    assert r.uplink_down(gateway(uplinks={"mqtt": up, "file": up}), T, NOW) is None
    one = r.uplink_down(gateway(uplinks={"mqtt": down, "file": up}), T, NOW)
    assert one is not None
    assert one.severity == "warning"
    assert one.detail["down"] == {"mqtt": {"delivered": 3, "lag": 40}}
    every = r.uplink_down(gateway(uplinks={"mqtt": down, "file": down}), T, NOW)
    assert every is not None
    assert every.severity == "critical"


# --- evaluate -------------------------------------------------------------------------


def test_evaluate_runs_every_rule_and_names_each_finding_once() -> None:
    sick = board(
        board_id="b1",
        last_seen_ms=NOW - HOUR,
        health=(sample(70, battery=3.3, heap_free=1000), sample(65, battery=3.3, heap_free=1000)),
        latest={"temperature": 99.0},
    )
    found = r.evaluate([sick, board(board_id="b2")], [gateway(disk_free=1)], T, NOW)
    keys = [f.key for f in found]
    assert sorted(keys) == [
        ("battery_low", "b1"),
        ("disk_full", "tegal/gw1"),
        ("heap_low", "b1"),
        ("implausible", "b1"),
        ("stale", "b1"),
    ]


def test_boards_behind_a_stale_gateway_are_counted_not_reported() -> None:
    silent = [board(board_id=f"b{i}", last_seen_ms=NOW - HOUR) for i in range(3)]
    elsewhere = board(board_id="b9", gateway="gw2", last_seen_ms=NOW - HOUR)
    found = r.evaluate([*silent, elsewhere], [gateway(last_state_ms=NOW - HOUR)], T, NOW)
    by_key: dict[tuple[str, str], Finding] = {f.key: f for f in found}
    assert set(by_key) == {("gateway_stale", "tegal/gw1"), ("stale", "b9")}
    assert by_key["gateway_stale", "tegal/gw1"].detail["stale_boards"] == 3


def test_a_gateway_in_lab_mode_is_a_critical_finding_with_what_it_refused() -> None:
    assert r.lab_mode(gateway(), T, NOW) is None
    assert r.lab_mode(gateway(refused={"bad_mac": 3}), T, NOW) is None
    found = r.lab_mode(gateway(plain_coap=True, refused={"bad_mac": 3, "replayed": 0}), T, NOW)
    assert found is not None
    assert found.severity == "critical"
    assert found.detail == {"plain_coap": True, "refused": {"bad_mac": 3}}
