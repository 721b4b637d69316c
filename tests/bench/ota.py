"""Signed OTA to emulated boards: how fast one gateway process fans a 128 KB release out to
200 boards, and how many bytes a one-file change downloads against the whole bundle.

Releases are built as ``simpul release build`` builds them, padded with a module of constant
bytes so the compiled files total exactly :data:`BUNDLE_BYTES` (``ota_release.py``). A
``simpul gateway run`` process on 127.0.0.1 caches the release (``simpul gateway release
add``) and offers it by kind (``simpul gateway desired set --kind``) to boards of the CPython
engine, all in this process's event loop, that keep sampling and uploading once a second
meanwhile. Each board's console says when it has checked every file (``U verified release
N: F files, T bytes, D downloaded``, D the bytes fetched over CoAP, the rest copied from its
running slot) and when its trial boot passed its self-test (``U confirmed release N``); the
times are taken as the lines are written (the fleet's console echo).

- ``ota_fanout``: 200 boards, run twice: with the gateway's default rate limits, then with
  them lifted (``UNLIMITED``). On loopback every board is the one host 127.0.0.1, so the
  per-host limit (5000 datagrams/s) caps the whole fleet, where in the field it would cap
  each board. CPU of the gateway's processes and of this process (every board), the
  gateway's peak RSS, the datagrams the boards exchanged and what the gate dropped.
- ``ota_delta``: 5 boards install release A (the whole bundle), then B, which differs from A
  in one string constant of ``app.py``: only ``app.mpy`` should be downloaded.

Each wait is bounded (:data:`DEADLINE_S`); temporary directories go at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hw.engines.base import BoardRunner
from hw.engines.fleet import Fleet, plan_fleet
from hw.link import UdpLink
from tests.bench.ota_release import BULK, Built, build, new_fleet
from tests.bench.proc import cpu_seconds, loadavg, machine_busy_s, session_pids, status_kb
from tests.gateway.test_fuzz import gateway_stats
from tests.ota.conftest import Keys, root_pub_file
from tests.support import FAST, ROOT, GatewayProcess, eventually

#: The release's size: the sum of its files' sizes, as the manifest's total says.
BUNDLE_BYTES = 128 * 1024
FANOUT_BOARDS = 200
DELTA_BOARDS = 5
FANOUT_TARGET_S = 30.0
#: The longest any one wait (boards online, every board verified, every board confirmed) may
#: take before the scenario fails.
DEADLINE_S = 180.0
#: Readings keep flowing during the update (a sample a second, each uploaded at once); a lost
#: or dropped request is sent again after 300 to 450 ms (FAST); a trial boot on a busy
#: machine gets two minutes for its self-test.
BOARD_CONFIG: dict[str, Any] = {
    **FAST,
    "interval_s": 1,
    "upload_every": 1,
    "ota_selftest_s": 120,
}
#: The one change between the delta scenario's two releases.
DELTA_EDIT = {"app": ('VERSION = "0.1.0"', 'VERSION = "0.1.1"')}
_VERIFIED = re.compile(r"^U verified release (\d+): (\d+) files, (\d+) bytes, (\d+) downloaded")
_FAILED = ("U rejected ", "U rolled_back ", "U trial self-test failed", "Traceback")
_STATS_ENV = {"SIMPUL_GATEWAY__LIMITS__OPEN_GATEWAY_STATS": "true"}


# -- the gateway ---------------------------------------------------------------------------


@contextlib.contextmanager
def ota_gateway(where: Path, keys: Keys, env: Mapping[str, str]) -> Iterator[GatewayProcess]:
    """A ``simpul gateway run`` process trusting the fleet's root key, its stats open."""
    where.mkdir(parents=True, exist_ok=True)
    pub = root_pub_file(keys, where)
    gateway = GatewayProcess(
        where / "gateway",
        env={"SIMPUL_GATEWAY__OTA__ROOT_PUBLIC_KEY": str(pub), **_STATS_ENV, **env},
    )
    gateway.start()
    try:
        yield gateway
    finally:
        try:
            gateway.stop()
        finally:
            gateway.close()


async def simpul_gateway(gateway: GatewayProcess, *args: str) -> str:
    """``simpul gateway ARGS --state-dir …`` without blocking the boards' event loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fleet.cli",
        "gateway",
        *args,
        "--state-dir",
        str(gateway.state_dir),
        cwd=ROOT,
        env={**os.environ, **gateway.env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    if proc.returncode != 0:
        raise RuntimeError(f"simpul gateway {' '.join(args)}: {err.decode().strip()}")
    return out.decode()


async def offer(gateway: GatewayProcess, seq: int, kinds: set[str]) -> None:
    """``desired set --kind K --release SEQ`` for every kind, the commands side by side."""
    await asyncio.gather(
        *(
            simpul_gateway(gateway, "desired", "set", "--kind", kind, "--release", str(seq))
            for kind in sorted(kinds)
        )
    )


# -- what the boards say -------------------------------------------------------------------


@dataclass
class UpdateWatch:
    """When each board's console said what about release ``seq``: the fleet's echo."""

    seq: int = 0
    runners: dict[str, BoardRunner] = field(default_factory=dict)
    #: Every boot's UDP links (the CPython engine's), which count their datagrams.
    links: list[UdpLink] = field(default_factory=list)
    downloading: dict[str, float] = field(default_factory=dict)
    verified: dict[str, float] = field(default_factory=dict)
    downloaded: dict[str, int] = field(default_factory=dict)
    files: dict[str, tuple[int, int]] = field(default_factory=dict)  # (files, total bytes)
    confirmed: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    gateway_timeouts: int = 0  # a request unanswered after every retransmission
    acks: int = 0  # readings requests the gateway acknowledged

    def follow(self, fleet: Fleet) -> None:
        self.runners = {r.spec.board_id: r for r in fleet.runners}

    def expect(self, seq: int) -> None:
        """Watch for release ``seq`` from now on, forgetting the last one's times."""
        self.seq = seq
        for times in (self.downloading, self.verified, self.confirmed, self.failed):
            times.clear()
        self.downloaded.clear()
        self.files.clear()
        self.gateway_timeouts = self.acks = 0

    def line(self, board_id: str, line: str) -> None:
        now = time.monotonic()
        if line.startswith("simpul "):  # a boot's first line: its link is open
            # Taken now: a board's links are dropped from it when it powers off.
            board = getattr(self.runners.get(board_id), "board", None)
            self.links.extend(getattr(board, "_links", []))
        elif line.startswith("A "):
            self.acks += 1
        elif line.startswith("E gateway timeout"):
            self.gateway_timeouts += 1
        elif line.startswith(f"U downloading release {self.seq}:"):
            self.downloading.setdefault(board_id, now)
        elif line.startswith(f"U confirmed release {self.seq} "):
            self.confirmed.setdefault(board_id, now)
        elif line.startswith(_FAILED):
            self.failed.setdefault(board_id, line)
        else:
            match = _VERIFIED.match(line)
            if match and int(match[1]) == self.seq and board_id not in self.verified:
                self.verified[board_id] = now
                self.files[board_id] = (int(match[2]), int(match[3]))
                self.downloaded[board_id] = int(match[4])

    def datagrams(self) -> tuple[int, int]:
        """(sent, received) by every board since the fleet started, over all its boots."""
        return sum(link.sent for link in self.links), sum(link.received for link in self.links)


async def until(predicate: Callable[[], bool], what: str, missing: Callable[[], list[str]]) -> None:
    if not await eventually(predicate, DEADLINE_S, step=0.05):
        left = missing()
        raise RuntimeError(f"{what}: {len(left)} boards not after {DEADLINE_S:.0f} s: {left[:5]}")


@dataclass(frozen=True)
class Usage:
    """A snapshot of the counters the figures are differences of."""

    at: float
    boards_cpu_s: float
    #: Of which in the kernel: the emulated flash is files on the host, the links sockets.
    boards_system_s: float
    gateway_cpu_s: float
    gateway_session_cpu_s: float
    machine_busy_s: float
    sent: int
    received: int
    acks: int
    given_up: int

    @classmethod
    def now(cls, gateway_pids: list[int], watch: UpdateWatch) -> Usage:
        times = os.times()
        sent, received = watch.datagrams()
        return cls(
            time.monotonic(),
            times.user + times.system,
            times.system,
            cpu_seconds(gateway_pids[0]),
            sum(cpu_seconds(pid) for pid in gateway_pids),
            machine_busy_s(),
            sent,
            received,
            watch.acks,
            watch.gateway_timeouts,
        )

    def until(self, later: Usage) -> dict[str, float]:
        """What happened between the two snapshots: CPU in per cent of one core, traffic."""
        span = later.at - self.at

        def pct(a: float, b: float) -> float:
            return round(100 * (b - a) / span, 1)

        return {
            "seconds": round(span, 2),
            "datagrams_from_boards": later.sent - self.sent,
            "datagrams_to_boards": later.received - self.received,
            "readings_requests_acked": later.acks - self.acks,
            "board_requests_given_up": later.given_up - self.given_up,
            "boards_process_cpu_s": round(later.boards_cpu_s - self.boards_cpu_s, 1),
            "boards_process_system_s": round(later.boards_system_s - self.boards_system_s, 1),
            "boards_process_pct": pct(self.boards_cpu_s, later.boards_cpu_s),
            "gateway_coap_process_pct": pct(self.gateway_cpu_s, later.gateway_cpu_s),
            "gateway_all_processes_pct": pct(
                self.gateway_session_cpu_s, later.gateway_session_cpu_s
            ),
            "machine_pct_of_one_core": pct(self.machine_busy_s, later.machine_busy_s),
        }


def spread(values: list[float]) -> dict[str, float]:
    """p50, p95 (nearest rank) and max, rounded to 10 ms; empty if no board got there."""
    ordered = sorted(values)
    if not ordered:
        return {}

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p * len(ordered)) - 1)], 2)

    return {"p50": rank(0.50), "p95": rank(0.95), "max": round(ordered[-1], 2)}


# -- the scenarios -------------------------------------------------------------------------


def board_config(keys: Keys) -> dict[str, Any]:
    return {**BOARD_CONFIG, "root_key": keys.root_public.hex()}


@contextlib.asynccontextmanager
async def running_fleet(
    work: Path, keys: Keys, gateway: GatewayProcess, count: int
) -> AsyncIterator[tuple[Fleet, UpdateWatch]]:
    """``count`` boards of the CPython engine on ``gateway``, running once all are online."""
    watch = UpdateWatch()
    fleet = Fleet(
        plan_fleet(count, seed=11, config=board_config(keys)),
        work,
        gateway.address,
        echo=watch.line,
        engine="cpython",
    )
    watch.follow(fleet)
    fleet.start()
    try:
        await until(
            lambda: fleet.online(5) == count,
            "online",
            lambda: [r.spec.board_id for r in fleet.runners if not r.record.last_ack],
        )
        yield fleet, watch
    finally:
        await fleet.stop()


@dataclass(frozen=True)
class Installed:
    """Snapshots when a release was offered, every board had verified it, and every board
    had confirmed it; ``offered``: when the ``desired set`` commands had all returned."""

    start: Usage
    offered: float
    verified: Usage
    confirmed: Usage


async def install(fleet: Fleet, watch: UpdateWatch, gateway: GatewayProcess, seq: int) -> Installed:
    """Offer release ``seq`` by kind and wait until every board verified it, then until every
    board confirmed it (a board that failed counts as done)."""
    ids = set(watch.runners)
    assert gateway.proc is not None
    pids = session_pids(gateway.proc.pid)
    watch.expect(seq)
    start = Usage.now(pids, watch)
    await offer(gateway, seq, {r.spec.kind for r in fleet.runners})
    offered = time.monotonic()
    await until(
        lambda: len(watch.verified.keys() | watch.failed.keys()) == len(ids),
        f"verified release {seq}",
        lambda: sorted(ids - watch.verified.keys() - watch.failed.keys()),
    )
    verified = Usage.now(pids, watch)
    await until(
        lambda: len(watch.confirmed.keys() | watch.failed.keys()) == len(ids),
        f"confirmed release {seq}",
        lambda: sorted(ids - watch.confirmed.keys() - watch.failed.keys()),
    )
    return Installed(start, offered, verified, Usage.now(pids, watch))


async def _fanout_run(
    work: Path, keys: Keys, bundle: Built, env: Mapping[str, str]
) -> dict[str, Any]:
    with ota_gateway(work, keys, env) as gateway:
        await simpul_gateway(gateway, "release", "add", str(bundle.path))
        async with running_fleet(work, keys, gateway, FANOUT_BOARDS) as (fleet, watch):
            load_before = loadavg()
            before = await gateway_stats(gateway.address)
            marks = await install(fleet, watch, gateway, bundle.seq)
            after = await gateway_stats(gateway.address)
            load_after = loadavg()
            assert gateway.proc is not None
            peak_rss_kb = status_kb(gateway.proc.pid, "VmHWM")
            session_rss_kb = sum(status_kb(pid, "VmRSS") for pid in session_pids(gateway.proc.pid))
    start, verified, confirmed = marks.start, marks.verified, marks.confirmed
    fanout_s = verified.at - start.at
    download_s = [t - watch.downloading.get(b, t) for b, t in watch.verified.items()]
    done = len(watch.verified)

    def delta(key: str, sub: str | None = None) -> int:
        """How much a counter of the gateway's stats grew over the run."""

        def value(stats: dict[str, Any]) -> int:
            found = stats[key] if sub is None else stats[key].get(sub, 0)
            return int(found)

        return value(after) - value(before)

    return {
        "boards": FANOUT_BOARDS,
        "failed": dict(sorted(watch.failed.items())),
        "offer_commands_s": round(marks.offered - start.at, 2),
        "all_verified_s": round(fanout_s, 2),
        "all_confirmed_s": round(confirmed.at - start.at, 2),
        "target_all_verified_s": FANOUT_TARGET_S,
        "boards_per_s": round(done / fanout_s, 2),
        "verified_s": spread([t - start.at for t in watch.verified.values()]),
        "confirmed_s": spread([t - start.at for t in watch.confirmed.values()]),
        "download_s": spread(download_s),
        "download_ms_per_block": spread([1000 * t / bundle.blocks() for t in download_s]),
        "downloaded_bytes": sum(watch.downloaded.values()),
        "ota_payload_bytes": sum(watch.downloaded.values())
        + done * len(bundle.release.manifest_bytes),
        "ota_block_requests_answered": done * bundle.blocks(),
        "dropped_by_rate_limit": delta("screened", "rate_limited"),
        "echo_challenges": delta("refused", "echo_challenge"),
        "readings_stored_offer_to_confirmed": delta("readings_stored"),
        "gateway_peak_rss_mb": round(peak_rss_kb / 1024, 1),
        "gateway_all_processes_rss_mb_at_end": round(session_rss_kb / 1024, 1),
        "offer_to_verified": start.until(verified),
        "verified_to_confirmed": verified.until(confirmed),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }


def ota_fanout(seconds: float, *, unlimited: Mapping[str, str]) -> dict[str, Any]:
    """The fan-out, with the default limits and with ``unlimited`` (``seconds`` unused)."""
    del seconds
    with tempfile.TemporaryDirectory(prefix="simpul-bench-ota-") as tmp:
        work = Path(tmp)
        keys = new_fleet(work / "keys")
        bundle = build(keys, work / "src", "0.2.0", BUNDLE_BYTES)
        runs = {
            name: asyncio.run(_fanout_run(work / name, keys, bundle, env))
            for name, env in (("default_limits", {}), ("limits_lifted", unlimited))
        }
    files = bundle.release.manifest.files
    return {
        "method": (
            f"a release of {len(files)} files totalling {bundle.total} bytes (the firmware's "
            f"modules compiled by mpy-cross plus {BULK}.mpy, constant bytes) and a "
            f"{len(bundle.release.manifest_bytes)}-byte manifest, cached by one 'simpul "
            f"gateway run' process on 127.0.0.1 and offered by kind ('desired set --kind', the "
            f"three commands side by side) to {FANOUT_BOARDS} CPython-engine boards in one "
            "process, online beforehand, each sampling and uploading every 1 s throughout "
            "(ack timeout 300 ms, 2 retransmissions); times from launching the 'desired set' "
            "commands to each board's 'U verified' console line (every file fetched in 1024-"
            "byte Block2 blocks, one request at a time, and checked) and 'U confirmed' line "
            "(trial boot passed its self-test); download_s: from a board's first 'U "
            "downloading' line to its 'U verified' (per block: over all its Block2 requests, "
            "manifest included, one at a time); CPU from /proc (gateway: its CoAP process, "
            "and all processes of its session) and os.times (this process: every board), as "
            "per cent of one core; peak RSS: the CoAP process's VmHWM; datagrams: counted by "
            "the boards' UDP links; dropped and Echo challenges: the gateway's counters. Run "
            "twice, each with a fresh gateway and fresh boards: default rate limits (on "
            "loopback all boards are one host, so the 5000/s per-host bucket, burst 10000, "
            "holds the whole fleet), then every limit lifted, in that order, in this one "
            "process; boards' flash directories and the gateway's state in the temporary "
            "directory (TMPDIR)"
        ),
        "figures": {
            "bundle_bytes": bundle.total,
            "files": len(files),
            "manifest_bytes": len(bundle.release.manifest_bytes),
            "block_requests_per_board": bundle.blocks(),
            **runs,
        },
    }


async def _delta_run(work: Path, keys: Keys, a: Built, b: Built) -> list[dict[str, Any]]:
    results = []
    with ota_gateway(work, keys, {}) as gateway:
        for built in (a, b):
            await simpul_gateway(gateway, "release", "add", str(built.path))
        async with running_fleet(work, keys, gateway, DELTA_BOARDS) as (fleet, watch):
            for built in (a, b):
                marks = await install(fleet, watch, gateway, built.seq)
                results.append(
                    {
                        "seq": built.seq,
                        "files": sorted({f for f, _ in watch.files.values()}),
                        "bundle_bytes": sorted({t for _, t in watch.files.values()}),
                        "downloaded_bytes": sorted(set(watch.downloaded.values())),
                        "failed": dict(sorted(watch.failed.items())),
                        "all_confirmed_s": round(marks.confirmed.at - marks.start.at, 2),
                    }
                )
    return results


def ota_delta(seconds: float) -> dict[str, Any]:
    """Bytes downloaded for a whole release, then for one that changes one file."""
    del seconds
    with tempfile.TemporaryDirectory(prefix="simpul-bench-ota-") as tmp:
        work = Path(tmp)
        keys = new_fleet(work / "keys")
        a = build(keys, work / "src-a", "0.2.0", BUNDLE_BYTES)
        b = build(keys, work / "src-b", "0.2.1", BUNDLE_BYTES, **DELTA_EDIT)
        first, second = asyncio.run(_delta_run(work / "run", keys, a, b))
    old = {e.path: e.sha256 for e in a.release.manifest.files}
    changed = sorted(e.path for e in b.release.manifest.files if old.get(e.path) != e.sha256)
    full = max(first["downloaded_bytes"], default=0)
    one_file = max(second["downloaded_bytes"], default=0)
    return {
        "method": (
            f"{DELTA_BOARDS} CPython-engine boards, one 'simpul gateway run' process on "
            f"127.0.0.1; release A ({a.total} bytes in {len(a.release.files)} files, as in "
            "ota_fanout) offered by kind until every board confirmed it, then release B, built "
            "from the same sources but for one string constant of app.py "
            f"({DELTA_EDIT['app'][0]!r} -> {DELTA_EDIT['app'][1]!r}); downloaded bytes are "
            "the D of each board's 'U verified release N: F files, T bytes, D downloaded' "
            "line (the distinct values over the boards), files the manifest's unchanged "
            "being copied from the running slot"
        ),
        "figures": {
            "boards": DELTA_BOARDS,
            "release_a": first,
            "release_b": second,
            "files_changed_a_to_b": changed,
            "changed_bytes": sum(len(b.release.files[path]) for path in changed),
            "ratio_b_to_a": round(one_file / full, 4) if full else None,
        },
    }
