"""The fleet manager's ingest at 10,000 boards: gateways' signed state (every board's health)
and signed batches (readings into baselines), and one cycle of the health rules over fleet.db.

In process, through :class:`fleet.engine.FleetEngine` on a real fleet.db (WAL,
synchronous=FULL) in a temporary directory; the broker is left out (what arrives is handed
to ``handle`` as the broker link would), so the figures are the fleet's own cost. 10 gateways
of 1,000 boards each; each round every gateway sends one state message (all its boards, each
with a new health report in the firmware's form) and one batch of 7 readings per board.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet.engine import FleetEngine
from fleet.link import Incoming
from fleet.store import DB_NAME, FleetStore
from gateway.batches import format as batch_format
from gateway.codec import cose
from gateway.control import messages

GATEWAYS = 10
PER_GATEWAY = 1000
ROUNDS = 3
#: Each quantity's (mean, standard deviation): plausible air-board readings.
QUANTITIES = {
    "temperature": (27.0, 3.0),
    "humidity": (75.0, 10.0),
    "pressure": (100_900.0, 150.0),
    "pm1": (15.0, 5.0),
    "pm2_5": (22.0, 8.0),
    "pm10": (35.0, 10.0),
    "battery": (3.9, 0.05),
}


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    board_id: str
    name: str
    unit: str | None
    kind: str
    value: float
    time_ms: int


def _health(board: str, boots: int, rng: random.Random) -> dict[str, Any]:
    return {
        "board": board, "kind": "air", "fw": "0.3.0", "slot": "a",
        "ota": {"seq": 0, "state": "idle", "detail": None}, "uptime_s": rng.randrange(10**6),
        "boot_count": boots, "reset_cause": "power_on", "heap_free": 60_000 + rng.randrange(9000),
        "heap_min": 50_000, "rssi": -60 - rng.randrange(30), "battery": 3.9 - rng.random() / 10,
        "seq": rng.randrange(10**6), "buffered": rng.randrange(5), "dropped": 0, "torn": 0,
        "rejected": 0, "flash_errors": 0, "samples": rng.randrange(10**5), "sensor_errors": {},
    }  # fmt: skip


def fleet_ingest(seconds: float) -> dict[str, Any]:
    rng = random.Random(7)
    keys = {f"gw-{g}": Ed25519PrivateKey.generate() for g in range(GATEWAYS)}
    boards = {gw: [f"{gw}-air-{i:04d}" for i in range(PER_GATEWAY)] for gw in keys}
    with tempfile.TemporaryDirectory(prefix="simpul-bench-fleet-") as tmp:
        fleet_dir = Path(tmp)
        store = FleetStore(fleet_dir / DB_NAME)
        store.add_site("city", "City")
        for gw, key in keys.items():
            store.add_gateway(gw, "city", cose.public_bytes(key))
            with store.transaction():
                for board in boards[gw]:
                    store.enroll_board(board, kind="air", site_id="city", gateway_id=gw)
        engine = FleetEngine(fleet_dir, store, None)
        chains = {gw: batch_format.ChainState() for gw in keys}
        state_ms: list[float] = []
        batch_ms: list[float] = []
        readings = 0
        now = int(time.time() * 1000)
        next_id = 1
        for round_ in range(ROUNDS):
            states, batches = [], []
            at = now + round_ * 60_000
            for gw, key in keys.items():
                payload = {
                    "type": "state", "v": 1, "site": "city", "gateway": gw, "at": at,
                    "seq": round_ + 1, "health": {"backlog": 0, "disk_free": 10**9,
                                                  "disk_total": 2 * 10**9, "uplinks": {}},
                    "boards": {
                        b: {"last_seen_ms": at, "health": _health(b, 1, rng), "health_ms": at,
                            "running": 0, "ota": None}
                        for b in boards[gw]
                    },
                    "rollout": None,
                }  # fmt: skip
                states.append(Incoming("city", gw, "state", messages.sign_up(key, payload)))
                rows = []
                for board in boards[gw]:
                    for name, (mean, sd) in QUANTITIES.items():
                        value = max(0.0, rng.gauss(mean, sd))
                        rows.append(_Row(next_id, board, name, None, "v", value, at))
                        next_id += 1
                encoded, chains[gw] = batch_format.build(
                    key, chains[gw], rows, at, gateway=gw, site="city"
                )
                batches.append(Incoming("city", gw, "batches", encoded))
                readings += len(rows)
            started = time.perf_counter()
            engine.handle(states)
            state_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            engine.handle(batches)
            batch_ms.append((time.perf_counter() - started) * 1000)
        assert not engine.refused, engine.refused
        assert engine.readings_verified == readings
        rules_ms = []
        transitions = 0
        for _ in range(3):
            started = time.perf_counter()
            transitions += len(engine.alerting.evaluate(now + (ROUNDS - 1) * 60_000 + 1000, {}))
            rules_ms.append((time.perf_counter() - started) * 1000)
        history = len({h.board_id for h in store.health_added(0)[1]})
        store.close()
    total = GATEWAYS * PER_GATEWAY
    return {
        "method": (
            f"{GATEWAYS} gateways x {PER_GATEWAY} boards enrolled in a fresh fleet.db; {ROUNDS}"
            " rounds, each: one signed state message per gateway (every board's health) handed"
            " to FleetEngine.handle, then one signed batch per gateway"
            f" ({len(QUANTITIES)} readings per board); timed with perf_counter, the median"
            " round. Then Alerting.evaluate (every rule, reading fleet.db) three times."
        ),
        "figures": {
            "boards": total,
            "state_round_ms": round(statistics.median(state_ms), 1),
            "health_reports_per_s": round(total / (statistics.median(state_ms) / 1000)),
            "batch_round_ms": round(statistics.median(batch_ms), 1),
            "readings_per_s": round(total * len(QUANTITIES) / (statistics.median(batch_ms) / 1000)),
            "rules_cycle_ms": round(statistics.median(rules_ms), 1),
            "alert_transitions": transitions,
            "boards_with_history": history,
        },
    }
