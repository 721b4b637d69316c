"""A board process killed in the middle of a flash write: the ring buffer recovers and no
corrupt record is ever delivered."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from hw.firmware_tools import firmware_module
from hw.flash import Flash
from tests.support import ROOT, GatewayProcess, iter_console


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
@pytest.mark.parametrize("write", [2, 4, 7, 11, 16])
def test_power_cut_mid_write_recovers_and_delivers_no_corrupt_record(
    tmp_path: Path, write: int
) -> None:
    gateway = GatewayProcess(tmp_path / "gateway")
    gateway.start()
    state = tmp_path / "boards"
    try:
        code = emulate(gateway, state, "--power-cut-at-write", str(write), "--duration", "30")
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
        assert emulate(gateway, state, "--duration", "4") == 0
    finally:
        gateway.stop()
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
