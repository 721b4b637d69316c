"""The gateway's wall clock jumps six hours forward, then back, during ingest and upload.

The real gateway runs under libfaketime (``LD_PRELOAD``; its offset read from a file on
every call, ``FAKETIME_DONT_FAKE_MONOTONIC=1``), so ``time.time()`` jumps in every process
of it while ``time.monotonic()`` goes on, as on a Pi whose NTP sync comes late or a bad RTC
is corrected. Boards post readings throughout with their own times.

libfaketime 0.9.10 (Debian bookworm) mistranslates ``clock_nanosleep(CLOCK_MONOTONIC,
TIMER_ABSTIME)`` when the monotonic clock is not faked, and Python 3.11's ``time.sleep``
uses exactly that call (libfaketime issue 426: EINVAL). A two-line preload in front of it
sends that one call straight to the kernel; the monotonic clock is real anyway.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.batches.format import Batch, decode
from gateway.batches.verify import iter_sequence
from tests.support import ROOT, AckedBoards, GatewayProcess, eventually

LIBFAKETIME = Path("/usr/lib") / f"{os.uname().machine}-linux-gnu/faketime/libfaketimeMT.so.1"
SIX_HOURS_S = 6 * 3600
SIMPUL = (sys.executable, "-m", "fleet.cli")
_SLEEP_SHIM = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
int clock_nanosleep(clockid_t clock, int flags, const struct timespec *req, struct timespec *rem)
{
    return syscall(SYS_clock_nanosleep, clock, flags, req, rem) == -1 ? errno : 0;
}
"""


@pytest.fixture
def faketime_env(tmp_path: Path) -> dict[str, str]:
    """The environment that puts a process's wall clock at the offset in ``offset_file``."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if not LIBFAKETIME.exists() or compiler is None:
        pytest.skip("needs libfaketime (Debian: faketime) and a C compiler")
    source = tmp_path / "sleep_shim.c"
    source.write_text(_SLEEP_SHIM)
    shim = tmp_path / "sleep_shim.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(shim), str(source)], check=True)
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    return {
        "LD_PRELOAD": f"{shim} {LIBFAKETIME}",
        "FAKETIME_TIMESTAMP_FILE": str(offset),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def set_offset(env: dict[str, str], offset: str) -> None:
    Path(env["FAKETIME_TIMESTAMP_FILE"]).write_text(offset + "\n")


def test_libfaketime_moves_pythons_wall_clock_not_its_monotonic_clock(
    faketime_env: dict[str, str],
) -> None:
    set_offset(faketime_env, "-6h")
    probe = (
        "import time; t = time.monotonic(); time.sleep(0.05);"
        " print(time.time(), time.monotonic() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, **faketime_env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert abs(float(out[0]) - (time.time() - SIX_HOURS_S)) < 60
    assert 0.04 < float(out[1]) < 1.0  # sleeps and the monotonic clock are real


def batches_in(state: Path) -> list[Batch]:
    path = state / "batches" / "batches.cbor"
    if not path.exists():
        return []
    with path.open("rb") as fp:
        return [decode(item) for item in iter_sequence(fp)]


@pytest.mark.slow
async def test_clock_jumps_of_six_hours_lose_nothing_and_stall_nothing(
    tmp_path: Path, faketime_env: dict[str, str]
) -> None:
    state = tmp_path / "state"
    # Batches cut by age only (never by count), so a stalled age timer shows.
    env = {**faketime_env, "SIMPUL_GATEWAY__BATCHES__MAX_READINGS": "1000000"}
    gateway = GatewayProcess(state, env=env)
    boards = AckedBoards(0)

    def delivered() -> set[tuple[str, str, int]]:
        return {(r.board_id, r.name, r.time_ms) for b in batches_in(state) for r in b.readings}

    def acked_since(before: set[tuple[str, str, int]]) -> bool:
        return bool(boards.acked - before)

    def delivered_all(readings: set[tuple[str, str, int]]) -> Callable[[], bool]:
        return lambda: readings <= delivered()

    try:
        gateway.start()
        boards.port = gateway.port
        await boards.start()
        assert await eventually(lambda: len(delivered()) > 30, 30)
        for offset in ("+6h", "-6h"):
            set_offset(faketime_env, offset)
            before = set(boards.acked)
            # Within seconds, not hours. (Under libfaketime a timed wait on a condition can
            # sleep through until it is signalled, a second or so here; a real clock jump
            # leaves CPython's monotonic waits alone.)
            assert await eventually(functools.partial(acked_since, before), 5), (
                f"nothing acknowledged after the jump to {offset}"
            )
            await asyncio.sleep(0.5)
            fresh = boards.acked - before
            # Readings acknowledged after the jump are signed and delivered within seconds:
            # no timer waits six hours for the wall clock to come back.
            assert await eventually(delivered_all(fresh), 10), offset
            await asyncio.sleep(1.0)
        await boards.stop()
        acked = boards.acked
        assert acked <= gateway.stored(), f"{len(acked - gateway.stored())} acked readings lost"
        assert await eventually(lambda: acked <= delivered(), 30), len(acked - delivered())
        upstream = {(x["board"], x["name"], x["time_ms"]) for x in gateway.upstream()}
        assert await eventually(
            lambda: acked <= {(x["board"], x["name"], x["time_ms"]) for x in gateway.upstream()},
            30,
        ), len(acked - upstream)
    finally:
        await boards.stop()
        gateway.close()
    batches = batches_in(state)
    seqs = [b.seq for b in batches]
    assert seqs == list(range(1, len(seqs) + 1))  # strictly increasing, no gap
    created = [b.created_ms for b in batches]
    assert max(created) - min(created) > SIX_HOURS_S * 1000 * 0.9  # the jumps are recorded
    # Readings keep the times their boards gave them (whole seconds from 1_700_000_000).
    times = {r.time_ms for b in batches for r in b.readings}
    assert all(t % 1000 == 0 and 1_700_000_000_000 < t < 1_800_000_000_000 for t in times)
    verify = await asyncio.to_thread(simpul_verify, state, tmp_path / "gw.pem")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def simpul_verify(state: Path, pem: Path) -> subprocess.CompletedProcess[str]:
    """``simpul verify`` over the batch file, with the gateway's public key."""
    key = subprocess.run(
        [*SIMPUL, "gateway", "key", "--public", "--state-dir", str(state)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    pem.write_text(key.stdout)
    return subprocess.run(
        [*SIMPUL, "verify", "--key", str(pem), "--file", str(state / "batches/batches.cbor")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
