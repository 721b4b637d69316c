"""The board the contract suite runs over: an air node on each engine, and a real board when
``SIMPUL_TEST_PORT`` names its serial port (as gpiozero's tests/test_real_pins.py takes a
real pin factory only when the environment offers one)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hw.engines import ENGINES
from tests.contract.repl_board import ReplBoard
from tests.support import serial_board

REAL_PORT_ENV = "SIMPUL_TEST_PORT"


@pytest.fixture(params=[*ENGINES, "real"])
async def board(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ReplBoard]:
    if request.param == "real":
        port = os.environ.get(REAL_PORT_ENV)
        if not port:
            pytest.skip(f"no real board: {REAL_PORT_ENV} names no serial port")
        handle = ReplBoard(port)
        await handle.open()
        try:
            yield handle
        finally:
            await handle.close()
        return
    async with serial_board(request.param, tmp_path) as runner:
        assert runner.serial_path is not None
        handle = ReplBoard(runner.serial_path, runner)
        await handle.open()
        try:
            yield handle
        finally:
            await handle.close()


@pytest.fixture
def echo_server() -> Iterator[tuple[str, int]]:
    """A UDP peer on 127.0.0.1 that sends every datagram back: (host, port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                data, peer = sock.recvfrom(2048)
                sock.sendto(data, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield ("127.0.0.1", sock.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        sock.close()
