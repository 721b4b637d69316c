"""``simpul gateway run`` as a real process: ready line, kills, graceful stop, clear errors."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import cbor2
import pytest
from aiocoap import Context

from tests.gateway.conftest import Client, db_rows, senml_pack
from tests.gateway.oscore_support import board_key, oscore_client
from tests.support import ROOT, GatewayProcess

CHANGED = "2.04 Changed"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleet.cli", "gateway", "run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_ready_line_then_sigterm_stops_cleanly(gateway_process: GatewayProcess) -> None:
    ready = gateway_process.start()
    assert ready["id"] == "gw-proc"
    assert ready["host"] == "127.0.0.1"
    assert int(ready["port"]) > 0
    assert ready["state"] == str(gateway_process.state_dir)
    context = await Context.create_client_context()
    try:
        client = Client(context, "127.0.0.1", gateway_process.port)
        assert str((await client.post_pack(senml_pack())).code) == CHANGED
    finally:
        await context.shutdown()
    assert await asyncio.to_thread(gateway_process.stop) == 0
    assert "Traceback" not in gateway_process.stderr_text()
    assert db_rows(gateway_process.state_dir, "SELECT count(*) FROM readings") == [(1,)]


@pytest.mark.slow
@pytest.mark.parametrize("security", ["plain", "oscore"])
async def test_every_acknowledged_batch_survives_sigkill(tmp_path: Path, security: str) -> None:
    """Six boards post while the gateway is SIGKILLed four times. Under OSCORE each board is
    an aiocoap client with its own keys, recovering through Echo after every kill."""
    keys = [board_key(f"k{n}", bytes((n + 1,))) for n in range(6)]
    gateway = GatewayProcess(tmp_path / "state", oscore_keys=keys if security == "oscore" else None)
    gateway.start()
    acked: set[tuple[str, str, int]] = set()
    sent = 0
    stop = asyncio.Event()
    contexts = contextlib.AsyncExitStack()
    if security == "oscore":
        clients = [
            Client(
                await contexts.enter_async_context(
                    oscore_client(tmp_path / key.board_id, key, "127.0.0.1", gateway.port)
                ),
                "127.0.0.1",
                gateway.port,
            )
            for key in keys
        ]
    else:
        context = await Context.create_client_context()
        contexts.push_async_callback(context.shutdown)
        clients = [Client(context, "127.0.0.1", gateway.port)] * len(keys)

    async def board(number: int) -> None:
        nonlocal sent
        client = clients[number]
        while not stop.is_set():
            sent += 1
            start_s = 1_700_000_000 + sent
            pack = senml_pack(f"k{number}", start_s=start_s, names=("a", "b", "c"))
            try:
                response = await asyncio.wait_for(client.post_pack(pack), 1.0)
            except (TimeoutError, OSError):
                await asyncio.sleep(0.05)  # the gateway is down; try the next batch
                continue
            except Exception:  # aiocoap's own errors while the peer is gone
                await asyncio.sleep(0.05)
                continue
            if str(response.code) == CHANGED:
                acked.update((f"k{number}", n, start_s * 1000) for n in ("a", "b", "c"))

    boards = [asyncio.ensure_future(board(n)) for n in range(6)]
    rng = random.Random(7)
    deadline = time.monotonic() + 40
    kills = 0
    try:
        while kills < 4 and time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(0.4, 1.0))
            gateway.kill()
            kills += 1
            await asyncio.to_thread(gateway.start)
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(*boards, return_exceptions=True)
        await contexts.aclose()
        gateway.close()
    assert kills == 4
    assert len(acked) > 30, "too few acknowledged batches to prove anything"
    rows = db_rows(gateway.state_dir, "SELECT board_id, name, time_ms FROM readings")
    stored = {(b, n, int(t)) for b, n, t in rows}
    assert acked <= stored, f"{len(acked - stored)} acknowledged readings lost"
    assert db_rows(gateway.state_dir, "PRAGMA integrity_check") == [("ok",)]


def test_port_in_use_is_a_clear_error_with_exit_code_2(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as taken:
        taken.bind(("::ffff:127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = run_cli("--bind", f"127.0.0.1:{port}", "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 2
    assert "address already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_unusable_state_dir_is_a_clear_error_with_exit_code_2(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_cli("--bind", "127.0.0.1:0", "--state-dir", str(blocker / "state"))
    assert result.returncode == 2
    assert "state dir" in result.stderr
    assert "Traceback" not in result.stderr


def test_corrupt_database_is_a_clear_error_with_exit_code_2(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "gateway.db").write_bytes(cbor2.dumps(list(range(5000))))
    result = run_cli("--bind", "127.0.0.1:0", "--state-dir", str(state))
    assert result.returncode == 2
    assert "gateway.db" in result.stderr
    assert "left untouched" in result.stderr
