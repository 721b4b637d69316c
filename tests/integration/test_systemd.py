"""``simpul gateway run`` under systemd-style supervision, as real processes.

A small supervisor stands in for systemd (PID 1 here is not systemd): an ``AF_UNIX``
datagram socket as ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC`` set, the notifications timed as
they arrive, and what ``Type=notify``, ``WatchdogSec=`` and ``Restart=on-failure`` do:
restart a gateway that died by a signal, kill and restart one that stopped pinging.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.support import ROOT, AckedBoards, GatewayProcess, child_pids, eventually

WATCHDOG_S = 1.0


class Supervisor:
    """systemd's side of sd_notify: every datagram, with the monotonic time it came."""

    def __init__(self) -> None:
        self.address = f"@simpul-sv-{uuid.uuid4().hex}"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind("\0" + self.address[1:])
        self._sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._done = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._done:
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            now = time.monotonic()
            self.messages.extend((now, line) for line in data.decode().splitlines())

    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.address, "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6))}

    def times(self, line: str, since: float = 0.0) -> list[float]:
        return [t for t, text in list(self.messages) if text == line and t >= since]

    def close(self) -> None:
        self._done = True
        self._thread.join()
        self._sock.close()

    def restart_if_failed(self, gateway: GatewayProcess) -> bool:
        """Restart=on-failure: start again unless it exited cleanly."""
        assert gateway.proc is not None
        code = gateway.proc.wait(10)
        if code == 0:
            return False
        gateway.close()  # systemd stops the whole control group first
        gateway.start()
        return True


@pytest.fixture
def supervisor() -> object:
    sv = Supervisor()
    yield sv
    sv.close()


async def test_supervised_gateway_is_ready_fed_on_time_and_restarted_losing_nothing(
    tmp_path: Path, supervisor: Supervisor
) -> None:
    gateway = GatewayProcess(tmp_path / "state", env=supervisor.env())
    boards: AckedBoards | None = None
    try:
        started = time.monotonic()
        gateway.start()
        assert await eventually(lambda: bool(supervisor.times("READY=1")), 10)
        boards = AckedBoards(gateway.port)
        await boards.start()
        await asyncio.sleep(4)
        pings = supervisor.times("WATCHDOG=1", since=started)
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert len(gaps) >= 5, pings
        # Every WATCHDOG_USEC / 2, and never as late as WatchdogSec, with boards sending.
        assert 0.35 < statistics.median(gaps) < 0.65, gaps
        assert max(gaps) < WATCHDOG_S, gaps
        acked_before = len(boards.acked)
        assert acked_before > 30

        killed = time.monotonic()
        gateway.kill()  # SIGKILL the daemon, as the OOM killer or a crash would
        assert await asyncio.to_thread(supervisor.restart_if_failed, gateway)
        assert await eventually(lambda: bool(supervisor.times("READY=1", since=killed)), 15)
        await asyncio.sleep(2)
        assert len(supervisor.times("WATCHDOG=1", since=killed)) >= 2
        await boards.stop()
        acked = boards.acked
        assert len(acked) > acked_before, "no reading acknowledged after the restart"

        def upstream() -> set[tuple[str, str, int]]:
            return {(x["board"], x["name"], x["time_ms"]) for x in gateway.upstream()}

        assert acked <= gateway.stored(), f"{len(acked - gateway.stored())} acked readings lost"
        assert await eventually(lambda: acked <= upstream(), 20), len(acked - upstream())

        stopping = time.monotonic()
        assert await asyncio.to_thread(gateway.stop) == 0
        assert supervisor.times("STOPPING=1", since=stopping)
        assert not await asyncio.to_thread(supervisor.restart_if_failed, gateway)
    finally:
        if boards is not None:
            await boards.stop()
        gateway.close()


async def test_a_hung_writer_stops_the_watchdog_and_the_gateway_is_restarted(
    tmp_path: Path, supervisor: Supervisor
) -> None:
    gateway = GatewayProcess(tmp_path / "state", env=supervisor.env())
    stalled: int | None = None
    try:
        gateway.start()
        assert await eventually(lambda: bool(supervisor.times("WATCHDOG=1")), 10)
        assert gateway.proc is not None
        stalled = child_pids(gateway.proc.pid)[0]  # the writer: the first process spawned
        os.kill(stalled, signal.SIGSTOP)
        stopped = time.monotonic()
        await asyncio.sleep(3 * WATCHDOG_S)
        late = supervisor.times("WATCHDOG=1", since=stopped + WATCHDOG_S / 2)
        assert late == [], f"pings went on with the writer stopped: {late}"
        assert gateway.proc.poll() is None  # alive, serving nothing: only the watchdog tells
        # What systemd does when WatchdogSec passes: abort the main process, kill the
        # control group (the stopped writer too), and restart the service.
        gateway.proc.send_signal(signal.SIGABRT)
        restarted = time.monotonic()  # before: READY follows the ready line within microseconds
        assert await asyncio.to_thread(supervisor.restart_if_failed, gateway)
        assert await eventually(lambda: bool(supervisor.times("READY=1", since=restarted)), 15)
        assert await eventually(
            lambda: len(supervisor.times("WATCHDOG=1", since=restarted)) >= 2, 5
        )
    finally:
        if stalled is not None:
            with_suppressed_kill(stalled)
        gateway.close()


def with_suppressed_kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


async def test_journal_lines_carry_priorities_from_the_daemon_and_its_children(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    log = tmp_path / "state.log"  # GatewayProcess appends stderr here
    log.touch()
    st = log.stat()
    gateway = GatewayProcess(
        state,
        env={
            "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}",
            # The outbox keeper (a child process) warns when it drops over budget.
            "SIMPUL_GATEWAY__OUTBOX__MAX_BYTES": "4096",
            "SIMPUL_GATEWAY__OUTBOX__POLICY": "drop_oldest",
        },
    )
    boards = AckedBoards(0)
    try:
        gateway.start()
        boards.port = gateway.port
        await boards.start()
        # The child processes need a few seconds to start on a loaded machine.
        assert await eventually(lambda: "gateway.store.budget" in log.read_text(), 30)
        await boards.stop()
        assert gateway.proc is not None
        os.kill(child_pids(gateway.proc.pid)[0], signal.SIGKILL)  # the writer dies
        assert await eventually(lambda: "restarting it" in log.read_text(), 10)
        assert await asyncio.to_thread(gateway.stop) == 0
    finally:
        await boards.stop()
        gateway.close()
    lines = [line for line in log.read_text().splitlines() if line]
    assert any(line.startswith("<6>gateway.cli: listening on") for line in lines), lines
    assert any(
        line.startswith("<4>gateway.intake.writer_link: store writer exited") for line in lines
    )
    assert any(line.startswith("<4>gateway.store.budget: outbox over budget") for line in lines)
    unprefixed = [line for line in lines if not (line[:1] == "<" and line[2:3] == ">")]
    assert unprefixed == []


def test_a_fatal_error_is_logged_at_error_priority_in_the_journal(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as taken:
        taken.bind(("::ffff:127.0.0.1", 0))
        port = taken.getsockname()[1]
        results = []
        for journal in (True, False):
            stderr = tmp_path / f"stderr-{journal}"
            with stderr.open("w") as stream:
                st = os.fstat(stream.fileno())
                env = {
                    **os.environ,
                    "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + (0 if journal else 1)}",
                }
                code = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "fleet.cli",
                        "gateway",
                        "run",
                        "--bind",
                        f"127.0.0.1:{port}",
                        "--state-dir",
                        str(tmp_path / "s"),
                    ],
                    cwd=ROOT,
                    stderr=stream,
                    stdout=subprocess.DEVNULL,
                    env=env,
                    timeout=60,
                ).returncode
            results.append((code, stderr.read_text()))
    (code, in_journal), (code_terminal, in_terminal) = results
    assert code == code_terminal == 2
    lines = in_journal.splitlines()
    assert all(line.startswith("<") for line in lines), in_journal  # every line its priority
    (fatal,) = [line for line in lines if line.startswith("<3>")]
    assert fatal.startswith("<3>simpul gateway: error: "), in_journal
    assert "address already in use" in fatal
    assert in_terminal.startswith("simpul gateway: error: "), in_terminal
