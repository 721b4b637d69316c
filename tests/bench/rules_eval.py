"""The fleet's health rules: milliseconds per ``fleet.health.evaluate`` over 10,000 boards.

``simpul fleet serve`` runs every rule every cycle, so one evaluation must take well under a
second. In process, no I/O: the inputs are built once, as the store would hand them over.

Each board has a day of health reports, one every 10 minutes (144), with its battery from
``hw.signals`` (a day of solar charge and night drain; 500 distinct traces, shared out
round-robin because computing the signal is slow), baselines for each of its kind's
quantities and its latest readings. A few boards in each hundred have something wrong (silent,
rebooting, sensor errors, a filling buffer, a reading out of range), so findings are built
too; 200 gateways of 50 boards each have 30 states of backlog and two uplinks.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from fleet.health import (
    QUANTITIES,
    BacklogSample,
    Baseline,
    BoardHealth,
    GatewayHealth,
    HealthSample,
    Thresholds,
    UplinkState,
    evaluate,
    step,
)
from hw.engines.fleet import plan_fleet
from hw.signals import Environment

BOARDS = 10_000
BOARDS_PER_GATEWAY = 50
REPORT_S = 600
REPORTS = 144  # a day
TRACES = 500
NOW_MS = 1_700_000_000_000

_QUANTITIES = {
    "air": {
        "temperature": (27.0, 3.0),
        "humidity": (75.0, 12.0),
        "pressure": (100_900.0, 150.0),
        "pm1": (15.0, 8.0),
        "pm2_5": (22.0, 12.0),
        "pm10": (35.0, 18.0),
    },
    "water": {
        "distance": (3.2, 0.2),
        "level": (0.9, 0.2),
        "temperature": (27.0, 3.0),
        "humidity": (75.0, 12.0),
        "pressure": (100_900.0, 150.0),
    },
    "bin": {"distance": (0.7, 0.25), "fill": (45.0, 30.0)},
}


def _battery_traces() -> list[list[float]]:
    start_s = NOW_MS / 1000 - REPORTS * REPORT_S
    traces = []
    for seed in range(TRACES):
        env = Environment(seed, "tegal", "air")
        traces.append([env.battery(start_s + i * REPORT_S) for i in range(REPORTS)])
    return traces


def _baseline(mean: float, std: float, count: int = 20_000) -> Baseline:
    return Baseline(count, mean, std * std * (count - 1), mean - 4 * std, mean + 4 * std)


def build_fleet(seed: int = 7) -> tuple[list[BoardHealth], list[GatewayHealth]]:
    rng = random.Random(seed)
    traces = _battery_traces()
    boards = []
    for i, spec in enumerate(plan_fleet(BOARDS, seed)):
        trouble = rng.random()
        battery = traces[i % TRACES]
        boot = rng.randrange(1, 50)
        errors = 0
        health = []
        for j in range(REPORTS):
            at_ms = NOW_MS - (REPORTS - j) * REPORT_S * 1000 + rng.randrange(30_000)
            if trouble < 0.005 and j >= REPORTS - 4:
                boot += 1  # a reboot loop in the last half hour
            if trouble < 0.01 and rng.random() < 0.5:
                errors += 1
            buffered = rng.randrange(3)
            if 0.01 <= trouble < 0.015 and j >= REPORTS - 5:
                buffered = 30 * (j - REPORTS + 6)
            health.append(
                HealthSample(
                    at_ms=at_ms,
                    boot_count=boot,
                    reset_cause="power_on",
                    heap_free=rng.randrange(40_000, 60_000),
                    heap_min=rng.randrange(30_000, 40_000),
                    rssi=float(rng.randrange(-85, -55)),
                    battery=battery[j],
                    buffered=buffered,
                    dropped=0,
                    samples=10 * j,
                    sensor_errors={"pms5003": {"timeout": errors}} if errors else {},
                )
            )
        quantities = {**_QUANTITIES[spec.kind], "battery": (3.9, 0.15)}
        latest = {
            name: min(
                QUANTITIES[name].high, max(QUANTITIES[name].low, mean + std * rng.gauss(0, 1))
            )
            for name, (mean, std) in quantities.items()
        }
        if 0.015 <= trouble < 0.02:
            latest["temperature" if spec.kind != "bin" else "fill"] = 150.0
        last_seen_ms = NOW_MS - rng.randrange(60_000)
        if 0.02 <= trouble < 0.03:
            last_seen_ms = NOW_MS - 3_600_000
        boards.append(
            BoardHealth(
                board_id=spec.board_id,
                kind=spec.kind,
                site=spec.site,
                gateway=f"gw-{i // BOARDS_PER_GATEWAY:03d}",
                cycle_s=60.0,
                last_seen_ms=last_seen_ms,
                health=tuple(health),
                baselines={n: _baseline(m, s) for n, (m, s) in quantities.items()},
                latest=latest,
            )
        )
    gateways = []
    for g in range(BOARDS // BOARDS_PER_GATEWAY):
        growing = g % 40 == 0
        backlog = tuple(
            BacklogSample(
                NOW_MS - (30 - k) * 30_000, 2000 + 100 * k if growing else rng.randrange(500)
            )
            for k in range(30)
        )
        site = boards[g * BOARDS_PER_GATEWAY].site
        gateways.append(
            GatewayHealth(
                gateway=f"gw-{g:03d}",
                site=site,
                state_interval_s=30.0,
                last_state_ms=NOW_MS - rng.randrange(30_000),
                disk_free=rng.randrange(1, 30) * 1_000_000_000,
                disk_total=32_000_000_000,
                backlog=backlog,
                uplinks={
                    "mqtt": UplinkState(up=g % 50 != 0, delivered=10_000, lag=10),
                    "file": UplinkState(up=True, delivered=10_000, lag=0),
                },
            )
        )
    return boards, gateways


def rules_eval(seconds: float) -> dict[str, Any]:
    boards, gateways = build_fleet()
    thresholds = Thresholds()
    evaluate(boards, gateways, thresholds, NOW_MS)  # warm-up
    times_ms: list[float] = []
    started = time.monotonic()
    while len(times_ms) < 5 or (time.monotonic() - started < seconds and len(times_ms) < 50):
        t0 = time.perf_counter()
        findings = evaluate(boards, gateways, thresholds, NOW_MS)
        times_ms.append((time.perf_counter() - t0) * 1000)
    counters: dict[tuple[str, str], Any] = {}
    t0 = time.perf_counter()
    counters, transitions = step(counters, findings, raise_after=1, clear_after=1)
    step_ms = (time.perf_counter() - t0) * 1000
    by_rule: dict[str, int] = {}
    for f in findings:
        by_rule[f.rule] = by_rule.get(f.rule, 0) + 1
    return {
        "method": (
            f"fleet.health.evaluate over {len(boards)} boards and {len(gateways)} gateways "
            f"with the default thresholds, in process, after one warm-up; each board has "
            f"{REPORTS} health reports (one per {REPORT_S} s, a day), its battery from "
            f"hw.signals ({TRACES} distinct traces shared round-robin), baselines and latest "
            "readings for its kind's quantities, and a few boards in a hundred have something "
            f"wrong; {len(times_ms)} evaluations timed with perf_counter (at least 5, for "
            f"about {seconds} s); then alerts.step over the findings once"
        ),
        "figures": {
            "boards": len(boards),
            "gateways": len(gateways),
            "evaluations": len(times_ms),
            "ms_per_evaluation_median": round(statistics.median(times_ms), 1),
            "ms_per_evaluation_min": round(min(times_ms), 1),
            "ms_per_evaluation_max": round(max(times_ms), 1),
            "findings": len(findings),
            "findings_by_rule": dict(sorted(by_rule.items())),
            "alerts_step_ms": round(step_ms, 1),
            "transitions": len(transitions),
            "target_ms": 1000,
        },
    }
