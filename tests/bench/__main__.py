"""Run the benchmark scenarios and write their figures to bench-results/.

Each result file names the machine and the method, so runs can be compared over time:
``bench-results/<UTC time>-<scenario>.json``. Run with ``nox -s bench`` or
``python -m tests.bench [SCENARIO ...] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.oscore import stats_file
from gateway.oscore.keys import BoardKey, encode_keys_file
from tests.bench import load
from tests.bench.board_verify import board_verify
from tests.bench.console_paint import console_paint
from tests.bench.drain import drain_backlog
from tests.bench.firmware_oscore import firmware_oscore
from tests.bench.fleet_ingest import fleet_ingest
from tests.bench.fuzz import gateway_flood, gateway_fuzz
from tests.bench.oscore_fuzz import gateway_oscore_fuzz
from tests.bench.oscore_load import ProtectedReadings, oscore_bench_keys
from tests.bench.ota import ota_delta, ota_fanout
from tests.bench.rules_eval import rules_eval
from tests.bench.signing import signing_throughput
from tests.support import free_udp_port

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench-results"


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "host": platform.node(),
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
    }


#: Throughput scenarios lift the gateway's rate limits (one load socket stands for many
#: boards); the gate's checks still run on every datagram. gateway_flood measures the limits.
UNLIMITED = {
    "SIMPUL_GATEWAY__LIMITS__PEER_RATE": "1000000",
    "SIMPUL_GATEWAY__LIMITS__PEER_BURST": "1000000",
    "SIMPUL_GATEWAY__LIMITS__HOST_RATE": "1000000",
    "SIMPUL_GATEWAY__LIMITS__HOST_BURST": "1000000",
    "SIMPUL_GATEWAY__LIMITS__TOTAL_RATE": "1000000",
    "SIMPUL_GATEWAY__LIMITS__TOTAL_BURST": "1000000",
    "SIMPUL_GATEWAY__LIMITS__MAX_IN_FLIGHT_PER_PEER": "100000",
}


@contextmanager
def process(
    args: list[str], ready: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Start a server process, wait for its ready line, stop it at the end."""
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if ready in line or not line:
            break
    if ready not in line:
        proc.kill()
        raise RuntimeError(f"{args[:4]} did not start: {line!r}")
    try:
        yield line.strip()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def gateway_vs_bare(seconds: float) -> dict[str, Any]:
    """Durable readings/s of the gateway beside a bare aiocoap server, same load, same run."""
    window, readings = 64, 10
    figures: dict[str, Any] = {}
    port = free_udp_port()
    with process([sys.executable, "-m", "tests.bench.bare_server", str(port)], "listening"):
        load.run("127.0.0.1", port, seconds=1.0, window=window, readings=readings)  # warm-up
        bare = load.run("127.0.0.1", port, seconds=seconds, window=window, readings=readings)
    with tempfile.TemporaryDirectory(prefix="simpul-bench-") as state:
        port = free_udp_port()
        cmd = [
            sys.executable,
            "-m",
            "fleet.cli",
            "gateway",
            "run",
            "--bind",
            f"127.0.0.1:{port}",
            "--state-dir",
            state,
        ]
        # The lab flag: this is the comparison in plain CoAP (gateway_vs_bare_oscore: OSCORE).
        lab = {"SIMPUL_GATEWAY__SECURITY__PLAIN_COAP": "true"}
        with process(cmd, "listening", env={**UNLIMITED, **lab}):
            load.run(
                "127.0.0.1",
                port,
                seconds=1.0,
                window=window,
                readings=readings,
                start_time=1_600_000_000,
            )
            durable = load.run("127.0.0.1", port, seconds=seconds, window=window, readings=readings)
            caught_up_s = uplink_catch_up(Path(state) / "gateway.db")
    for name, result in (("bare_aiocoap", bare), ("durable_gateway", durable)):
        figures[name] = load_figures(result)
    figures["durable_gateway"]["file_uplink_caught_up_after_s"] = caught_up_s
    figures["ratio"] = round(durable.readings_per_s / bare.readings_per_s, 3)
    figures["target_ratio"] = 0.9
    return {
        "method": (
            f"one load process (raw UDP, {window} CON POSTs in flight, {readings} SenML-CBOR "
            f"readings each, unique times) against each server in turn for {seconds} s after "
            "a 1 s warm-up, on 127.0.0.1; the gateway (its rate limits lifted: one load socket "
            "stands for many boards; every datagram still passes its gate) commits every "
            "reading to SQLite (WAL, "
            "synchronous=FULL, group commit) before its 2.04; the bare aiocoap server answers "
            "2.04 at once; a request counts once its 2.04 arrives, piggybacked or in a separate "
            "response (after an empty ACK); errors are 4.xx/5.xx answers; then the time the "
            "file uplink needs to deliver every stored reading once the load stops"
        ),
        "figures": figures,
    }


def load_figures(result: load.LoadResult) -> dict[str, Any]:
    return {
        "readings_per_s": round(result.readings_per_s),
        "requests_per_s": round(result.requests_per_s),
        "retransmissions": result.retransmissions,
        "separate_responses": result.separate_responses,
        "errors": result.errors,
        "unexpected_answers": result.unexpected,
        "abandoned_separate_responses": result.abandoned,
    }


#: Requests protected before the warm-up (more than a second's worth on any machine so far).
WARM_UP_POOL = 12_000


def protected_load(
    port: int, keys: list[BoardKey], seconds: float, *, window: int, readings: int, start: int
) -> tuple[load.LoadResult, load.LoadResult, float]:
    """A 1 s warm-up and a run of ``seconds`` with pre-protected requests: (warm-up, run,
    microseconds a request cost to protect beforehand). The run's pool is twice what the
    warm-up's rate would send, so protection never happens during a timed run."""
    source = ProtectedReadings(keys, readings=readings, start_time=start)
    started = time.perf_counter()
    source.prepare(WARM_UP_POOL)
    protect_us = (time.perf_counter() - started) / WARM_UP_POOL * 1e6
    kwargs: dict[str, Any] = {"window": window, "readings": readings, "source": source}
    warm = load.run("127.0.0.1", port, seconds=1.0, **kwargs)
    rate = (warm.requests + warm.errors + warm.retransmissions) / warm.seconds
    source.prepare(max(int(2 * rate * seconds) + 4 * window - source.pool, 0))
    run = load.run("127.0.0.1", port, seconds=seconds, **kwargs)
    return warm, run, protect_us


def gateway_vs_bare_oscore(seconds: float) -> dict[str, Any]:
    """gateway_vs_bare with OSCORE on both sides: the same protected load against a bare
    aiocoap server behind aiocoap's OSCORE site wrapper and against the gateway, plain CoAP
    off; then whether the gateway stored exactly the readings it acknowledged."""
    window, readings = 64, 10
    keys = oscore_bench_keys()
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="simpul-bench-") as tmp:
        keys_file = Path(tmp) / "keys.json"
        keys_file.write_bytes(encode_keys_file(keys))
        port = free_udp_port()
        bare_server = [sys.executable, "-m", "tests.bench.bare_server", str(port), str(keys_file)]
        with process(bare_server, "listening"):
            _, bare, protect_us = protected_load(
                port, keys, seconds, window=window, readings=readings, start=1_700_000_000
            )
        state = Path(tmp) / "state"
        port = free_udp_port()
        cmd = [sys.executable, "-m", "fleet.cli", "gateway", "run"]
        cmd += ["--bind", f"127.0.0.1:{port}", "--state-dir", str(state)]
        env = {
            **UNLIMITED,
            "SIMPUL_GATEWAY__SECURITY__PLAIN_COAP": "false",
            "SIMPUL_GATEWAY__SECURITY__KEYS_FILE": str(keys_file),
        }
        with process(cmd, "listening", env=env):
            warm, durable, _ = protected_load(
                port, keys, seconds, window=window, readings=readings, start=1_600_000_000
            )
            caught_up_s = uplink_catch_up(state / "gateway.db")
        db = sqlite3.connect(f"file:{state / 'gateway.db'}?mode=ro", uri=True)
        try:
            ((stored,),) = db.execute("SELECT count(*) FROM readings").fetchall()
        finally:
            db.close()
        security = stats_file.read(state) or {}
    acked = (warm.requests + warm.late + durable.requests + durable.late) * readings
    for name, result in (("bare_aiocoap_oscore", bare), ("durable_gateway_oscore", durable)):
        figures[name] = load_figures(result)
    figures["durable_gateway_oscore"] |= {
        "file_uplink_caught_up_after_s": caught_up_s,
        "readings_acked": acked,
        "readings_stored": stored,
        "stored_equals_acked": stored == acked,
        "refused": security.get("refused"),
    }
    figures["load_protect_us_per_request"] = round(protect_us, 1)
    figures["ratio"] = round(durable.readings_per_s / bare.readings_per_s, 3)
    figures["target_ratio"] = 0.9
    return {
        "method": (
            f"gateway_vs_bare with OSCORE (RFC 8613, AES-CCM-16-64-128) on both sides: one load "
            f"process (raw UDP, {window} CON POSTs in flight, {readings} SenML-CBOR readings "
            f"each, unique times) from {len(keys)} boards taking turns, each with its own key, "
            "its board id in its packs and its own sender sequence numbers in order (no "
            "replays); requests protected before each timed run (tests/oscore_requests.py: "
            "byte for byte aiocoap's protection, cryptography's AESCCM; the message ID and "
            "token, unprotected in OSCORE, set per send); each answer verified with its "
            "request's nonce: a request counts once its inner 2.04 arrives (outer 2.04), "
            "piggybacked or separate; errors are inner 4.xx/5.xx or unprotected 4.xx/5.xx "
            "answers (the gateway's 4.01 refusals), unexpected ones include answers that do "
            "not verify. Against each server in turn for "
            f"{seconds} s after a 1 s warm-up, on 127.0.0.1: the bare aiocoap server behind "
            "aiocoap's OscoreSiteWrapper with a FilesystemSecurityContext per board (as the "
            "gateway's) answers 2.04 at once and stores nothing; the gateway (plain CoAP off, "
            "the boards' keys from its keys file, rate limits lifted: one load socket stands "
            "for many boards) keeps each board's replay window and persists its sequence "
            "numbers in steps (aiocoap's B.1), commits every reading to SQLite (WAL, "
            "synchronous=FULL, group commit) before its 2.04; then the time the file uplink "
            "needs to deliver every stored reading, and the readings in gateway.db against "
            "those acknowledged (warm-up, run and answers after its end)"
        ),
        "figures": figures,
    }


def firmware_heap(seconds: float) -> dict[str, Any]:
    """The firmware's heap and CPU on the real MicroPython VM (see hw/firmware_tools/heap.py)."""
    import asyncio
    from dataclasses import asdict

    from hw.firmware_tools.heap import HEAP_BUDGET, measure_cpu, measure_heap
    from tests.support import GatewayProcess

    with tempfile.TemporaryDirectory(prefix="simpul-bench-") as state:
        gateway = GatewayProcess(Path(state) / "gateway")
        gateway.start()
        try:
            heap = asyncio.run(measure_heap(Path(state) / "heap", gateway.address))
            cpu = asyncio.run(measure_cpu(Path(state) / "cpu", gateway.address, 5, seconds, 1.0))
        finally:
            gateway.stop()
    figures = {**asdict(heap), "runtime_peak": heap.runtime_peak, "budget": HEAP_BUDGET}
    figures["firmware_peak"] = heap.firmware_peak
    return {
        "method": (
            "one air node on the MicroPython VM (WebAssembly under Node) against a gateway "
            "process on 127.0.0.1; its flash ring buffer filled beforehand by the firmware's own "
            "code; live heap (gc.collect then gc.mem_alloc) sampled every 2 ms between asyncio "
            "steps while the backlog is sent, then over 12 normal cycles of 0.5 s; bytes. "
            f"CPU: 5 VM boards sampling every 1 s for {seconds} s, no heap probe"
        ),
        "figures": {**figures, "cpu": cpu},
    }


def uplink_catch_up(db_path: Path, timeout_s: float = 120.0) -> float | None:
    """Seconds until the file uplink has delivered every stored reading (None: not in time).

    The uplinks run at a lower CPU priority than the server, so under full load they may fall
    behind; this says how far, as the time they need once the load stops.
    """
    started = time.monotonic()
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        while time.monotonic() - started < timeout_s:
            ((head, delivered),) = db.execute(
                "SELECT (SELECT coalesce(max(id), 0) FROM readings),"
                " (SELECT coalesce(max(delivered_id), 0) FROM uplink_progress"
                "  WHERE uplink = 'file')"
            ).fetchall()
            if delivered >= head:
                return round(time.monotonic() - started, 2)
            time.sleep(0.05)
    finally:
        db.close()
    return None


SCENARIOS: dict[str, Callable[[float], dict[str, Any]]] = {
    "gateway_vs_bare": gateway_vs_bare,
    "gateway_vs_bare_oscore": gateway_vs_bare_oscore,
    "firmware_heap": firmware_heap,
    "firmware_oscore": firmware_oscore,
    "signing_throughput": signing_throughput,
    "drain_backlog": drain_backlog,
    "board_verify": board_verify,
    "gateway_fuzz": gateway_fuzz,
    "gateway_oscore_fuzz": gateway_oscore_fuzz,
    "gateway_flood": gateway_flood,
    # Run with the default limits and with UNLIMITED: all its boards share one host.
    "ota_fanout": functools.partial(ota_fanout, unlimited=UNLIMITED),
    "ota_delta": ota_delta,
    "rules_eval": rules_eval,
    "fleet_ingest": fleet_ingest,
    "console_paint": console_paint,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("scenarios", nargs="*", choices=[*SCENARIOS, []], metavar="SCENARIO")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for name in args.scenarios or list(SCENARIOS):
        result = {"scenario": name, "when": stamp, "machine": machine()}
        result.update(SCENARIOS[name](args.seconds))
        path = RESULTS / f"{stamp}-{name}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        figures = result.get("figures") or {
            k: v for k, v in result.items() if k not in ("scenario", "when", "machine", "method")
        }
        print(f"{name}: {json.dumps(figures)}")
        print(f"  written to {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
