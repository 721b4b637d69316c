"""The seeded signals (hw/signals.py): reproducible, plausible, with the right daily shapes."""

from __future__ import annotations

import itertools
import statistics

import pytest

from hw.signals import (
    BIN_FULL_MM,
    HOUR_S,
    SITES,
    Environment,
    day_start,
    find_site,
    local_day,
    local_hours,
)

T0 = 1767225600.0  # 2026-01-01 00:00 UTC = 07:00 WIB
DAY0 = local_day(T0)
DAYS = 40


def at(day: int, hour: float) -> float:
    return day_start(day) + hour * HOUR_S


def hourly(days: int = 7) -> list[float]:
    return [at(DAY0, 0) + h * HOUR_S for h in range(24 * days)]


def test_local_time_is_wib() -> None:
    assert local_hours(T0) == 7.0
    assert local_hours(at(DAY0, 13.5)) == 13.5
    assert local_day(at(DAY0 + 1, 0)) == DAY0 + 1
    assert local_day(at(DAY0 + 1, 0) - 1) == DAY0


def test_same_seed_same_world_other_seed_other_noise() -> None:
    a, b = Environment(42, "tegal", "air"), Environment(42, "tegal", "air")
    c = Environment(43, "tegal", "air")
    times = hourly(3)
    series = [(e.air(t), e.particulates(t), e.battery(t)) for e in (a, b, c) for t in times]
    n = len(times)
    assert series[:n] == series[n : 2 * n]
    assert series[:n] != series[2 * n :]
    # Boards at the same site share the weather: the same storms and burning.
    assert [a.storm(d) for d in range(DAY0, DAY0 + DAYS)] == [
        c.storm(d) for d in range(DAY0, DAY0 + DAYS)
    ]
    assert any(a.storm(d) for d in range(DAY0, DAY0 + DAYS))
    other_world = Environment(42, "tegal", "air", world_seed=1)
    assert [a.storm(d) for d in range(DAY0, DAY0 + DAYS)] != [
        other_world.storm(d) for d in range(DAY0, DAY0 + DAYS)
    ]


def test_sites_are_found_by_key_name_or_code() -> None:
    assert find_site("Pematang Siantar") is SITES["pematang_siantar"]
    assert find_site("TKN") is SITES["takengon"]
    with pytest.raises(KeyError):
        find_site("Jakarta")
    with pytest.raises(ValueError, match="kind"):
        Environment(1, "tegal", "weather")


def test_temperature_and_humidity_are_plausible() -> None:
    times = hourly(DAYS)
    coast = Environment(1, "tegal", "air")
    highland = Environment(1, "takengon", "air")
    tc = [coast.temperature(t) for t in times]
    th = [highland.temperature(t) for t in times]
    assert 21 < min(tc) <= max(tc) < 35
    assert 11 < min(th) <= max(th) < 27
    assert statistics.mean(tc) - statistics.mean(th) > 6
    rh = [coast.humidity(t) for t in times]
    assert 30 <= min(rh) <= max(rh) <= 100
    assert 60 < statistics.mean(rh) < 90
    # Humidity goes down as the air warms.
    assert statistics.correlation(tc, rh) < -0.7


def test_warmest_in_the_afternoon_coolest_at_dawn() -> None:
    env = Environment(3, "cimahi", "air")
    days = range(DAY0, DAY0 + DAYS)
    afternoon = statistics.mean(env.temperature(at(d, 14)) for d in days)
    dawn = statistics.mean(env.temperature(at(d, 6)) for d in days)
    assert afternoon - dawn > 5


def test_pressure_by_altitude_with_a_semidiurnal_tide() -> None:
    times = hourly(DAYS)
    sea = [Environment(1, "tegal", "air").pressure(t) for t in times]
    high = [Environment(1, "takengon", "air").pressure(t) for t in times]
    assert 99500 < min(sea) <= max(sea) < 102500
    assert 86000 < min(high) <= max(high) < 89000
    env = Environment(1, "tegal", "air")
    days = range(DAY0, DAY0 + DAYS)
    for peak, trough in ((10, 16), (22, 4)):
        high_tide = statistics.mean(env.pressure(at(d, peak)) for d in days)
        low_tide = statistics.mean(env.pressure(at(d, trough)) for d in days)
        assert high_tide - low_tide > 150


def test_rush_hour_pm2_5_higher_than_at_night() -> None:
    env = Environment(8, "cimahi", "air")
    days = range(DAY0, DAY0 + DAYS)
    night = statistics.mean(env.pm2_5(at(d, 3)) for d in days)
    morning = statistics.mean(env.pm2_5(at(d, 7.5)) for d in days)
    evening = statistics.mean(env.pm2_5(at(d, 17.75)) for d in days)
    assert morning > 1.8 * night
    assert evening > 1.6 * night


def test_particulate_fractions() -> None:
    env = Environment(8, "tegal", "air")
    for t in hourly(3):
        pm1, pm2_5, pm10 = env.particulates(t)
        assert 0 <= pm1 <= pm2_5 <= pm10 <= 999
        assert pm1 == pytest.approx(0.7 * pm2_5, rel=0.05)
        assert pm10 == pytest.approx(1.6 * pm2_5, rel=0.06)


def test_burning_episodes_raise_pm2_5_for_hours() -> None:
    env = Environment(2, "pematang_siantar", "air")
    days = range(DAY0, DAY0 + DAYS)
    episodes = [b for d in days if (b := env.burning(d))]
    assert 2 <= len(episodes) <= 16  # about one day in five
    calm = [d for d in days if not (env.burning(d) or env.burning(d - 1) or env.storm(d))]
    checked = 0
    for b in episodes:
        assert 2 * HOUR_S <= b.duration_s <= 6 * HOUR_S
        middle = b.start + b.duration_s / 2
        if env.wetness(middle) > 0.1:
            continue  # rain washes the smoke out
        hour = local_hours(middle)
        baseline = statistics.median(env.pm2_5(at(d, hour)) for d in calm)
        assert env.pm2_5(middle) > baseline + 40
        assert env.pm2_5(b.start + b.duration_s + HOUR_S) < env.pm2_5(middle)
        checked += 1
    assert checked >= 2


def test_river_rises_in_a_storm_and_recedes() -> None:
    env = Environment(4, "tegal", "water")
    site = SITES["tegal"]
    storms = [s for d in range(DAY0, DAY0 + DAYS) if (s := env.storm(d))]
    assert 5 <= len(storms) <= 25
    for s in storms:
        assert env.rain(s.start + s.duration_s / 2) == pytest.approx(s.peak_mm_h)
        before = env.river_level_mm(s.start)
        peak = env.river_level_mm(s.end + HOUR_S)
        bank_full = site.river_mount_mm - 350
        assert peak - before > 20 * s.total_mm or peak == bank_full
        if not any(env.storm(local_day(s.start) + k) for k in (1, 2)):
            later = env.river_level_mm(s.end + 30 * HOUR_S)
            assert later - before < 0.3 * (peak - before) + 30  # most of it has drained away
    dry = [d for d in range(DAY0 + 5, DAY0 + DAYS) if not any(env.storm(d - k) for k in range(5))]
    assert dry
    for d in dry:
        assert abs(env.river_level_mm(at(d, 12)) - site.river_base_mm) < 60
    assert all(env.rain(at(d, 12)) == 0 for d in range(DAY0, DAY0 + DAYS))  # storms come later


def test_sonar_sees_the_water_surface() -> None:
    env = Environment(4, "takengon", "water")
    mount = SITES["takengon"].river_mount_mm
    for t in hourly(10):
        assert env.sonar_mm(t) == pytest.approx(mount - env.river_level_mm(t))
        assert 350 <= env.sonar_mm(t) < 6000


def test_bins_fill_through_the_day_and_are_emptied_at_collection() -> None:
    env = Environment(6, "cimahi", "bin")
    collected = [d for d in range(DAY0, DAY0 + DAYS) if env.collected(d)]
    missed = [d for d in range(DAY0 + 1, DAY0 + DAYS) if not env.collected(d)]
    assert missed  # a world with no missed collection would not test that branch
    assert len(collected) > 0.75 * DAYS
    for d in collected:
        pickup = env.collection_time(d)
        assert 6 * HOUR_S <= pickup - day_start(d) <= 7.5 * HOUR_S
        assert env.bin_fill(pickup - 60) > 0.3
        assert env.bin_fill(pickup + 60) < 0.01
        # It fills up through the day.
        fills = [env.bin_fill(pickup + h * HOUR_S) for h in range(1, 24)]
        assert fills == sorted(fills)
        assert fills[-1] > 0.4
    for d in missed:
        pickup = env.collection_time(d)
        assert env.bin_fill(pickup + 60) >= env.bin_fill(pickup - 60)


def test_bin_sonar_geometry() -> None:
    env = Environment(6, "tegal", "bin")
    depth = SITES["tegal"].bin_depth_mm
    for t in hourly(10):
        expected = depth - env.bin_fill(t) * (depth - BIN_FULL_MM)
        assert env.sonar_mm(t) == pytest.approx(expected, abs=5)
        assert 200 < env.sonar_mm(t) <= depth + 5
    with pytest.raises(ValueError, match="sonar"):
        Environment(6, "tegal", "air").sonar_mm(T0)


def test_battery_charges_by_day_and_discharges_by_night() -> None:
    env = Environment(5, "tarutung", "air")
    volts = [env.battery(t) for t in hourly(DAYS)]
    assert 3.45 < min(volts) <= max(volts) < 4.2
    days = range(DAY0, DAY0 + DAYS)
    afternoon = statistics.mean(env.battery(at(d, 15)) for d in days)
    dawn = statistics.mean(env.battery(at(d, 6)) for d in days)
    assert afternoon - dawn > 0.2
    # Continuous: no jumps between minutes.
    minutes = [env.battery(at(DAY0, 0) + 60 * m) for m in range(3 * 24 * 60)]
    assert max(abs(a - b) for a, b in itertools.pairwise(minutes)) < 0.01
