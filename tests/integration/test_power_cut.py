"""A board process killed in the middle of a flash write: the ring buffer recovers and no
corrupt record is ever delivered; with OSCORE on both ends too, where the board's flash
writes include its sequence number reservations (``/data/oscore_seq``), and the gateway
refuses nothing after the reboot (no sequence number used twice)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from hw.engines.fleet import plan_fleet
from hw.firmware_tools import firmware_module
from hw.flash import Flash
from tests.support import (
    ROOT,
    GatewayProcess,
    assert_nothing_refused,
    fleet_keys,
    iter_console,
)


def emulate(gateway: GatewayProcess, state: Path, *extra: str, timeout: float = 60) -> int:
    cmd = [
        sys.executable,
        "-m",
        "fleet.cli",
        "emulate",
        "--gateway",
        f"127.0.0.1:{gateway.port}",
        "--boards",
        "1",
        "--cycle",
        "0.2",
        "--state-dir",
        str(state),
        *extra,
    ]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=timeout).returncode


@pytest.mark.slow
@pytest.mark.parametrize("security", ["plain", "oscore"])
@pytest.mark.parametrize("write", [2, 4, 7, 11, 16])
def test_power_cut_mid_write_recovers_and_delivers_no_corrupt_record(
    tmp_path: Path, write: int, security: str
) -> None:
    extra: tuple[str, ...] = ()
    keys = None
    if security == "oscore":
        keys = fleet_keys(plan_fleet(1))  # the board `simpul emulate --boards 1` runs
    gateway = GatewayProcess(tmp_path / "gateway", oscore_keys=keys)
    if gateway.oscore_keys is not None:
        extra = ("--oscore-keys", gateway.env["SIMPUL_GATEWAY__SECURITY__KEYS_FILE"])
    gateway.start()
    state = tmp_path / "boards"
    try:
        code = emulate(
            gateway, state, *extra, "--power-cut-at-write", str(write), "--duration", "30"
        )
        assert code == -9, "the board process should have died in the power cut"
        board_dir = next((state / "boards").iterdir())
        # Open the ring buffer as the firmware does at boot: every record it keeps is whole.
        ringbuf = firmware_module("ringbuf")
        senml = firmware_module("senml")
        buffer = ringbuf.RingBuffer(Flash(board_dir / "flash"), "/data/buf", 4096, 16)
        records = buffer.peek(1000, 1 << 20)
        seqs = [seq for seq, _ in records]
        assert seqs == sorted(set(seqs))
        for _, payload in records:
            decoded = senml.decode(senml.pack([payload[1:]], payload[0]))
            assert len(decoded) == payload[0]
        # Boot again without the fault: the board carries on and delivers what it kept.
        assert emulate(gateway, state, *extra, "--duration", "4") == 0
        health = asyncio.run(gateway.health()) if keys is not None else None
    finally:
        gateway.stop()
    if health is not None:
        assert_nothing_refused(health)
    console = list(iter_console(board_dir))
    samples: dict[int, int] = {}
    for line in console:
        if line.startswith("S "):
            _, _seq, sampled_at, count = line.split()
            samples[int(sampled_at)] = int(count)
    assert any(line.startswith("simpul") and " boot 2 " in line for line in console)
    upstream = Counter(line["time_ms"] for line in gateway.upstream())
    assert upstream, "nothing was delivered after the reboot"
    # Every reading upstream belongs to a sample the board completed, none is half a record.
    for t_ms, readings in upstream.items():
        assert samples.get(t_ms) == readings, (t_ms, readings, samples.get(t_ms))
