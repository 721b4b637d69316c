"""A real Mosquitto broker for tests, on a free loopback port, gone at the end.

    with running_mosquitto(tmp_path) as broker:
        client.connect(broker.host, broker.port)

or the ``mosquitto`` fixture (``tests/batches/conftest.py`` shows how to expose it).
:meth:`Broker.stop` and :meth:`Broker.start` stop and restart it on the same port, for
outage tests. Needs the Debian package ``mosquitto`` (``/usr/sbin/mosquitto``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

MOSQUITTO = os.environ.get("SIMPUL_MOSQUITTO", "/usr/sbin/mosquitto")
_START_TIMEOUT_S = 10.0


def mosquitto_path() -> str:
    """The broker binary, or a test failure naming the package to install."""
    found = shutil.which(MOSQUITTO) or shutil.which("mosquitto")
    if found is None:
        pytest.fail(
            f"Mosquitto not found at {MOSQUITTO}: install the Debian package 'mosquitto'"
            " (apt-get install mosquitto) or set SIMPUL_MOSQUITTO to the broker binary",
            pytrace=False,
        )
    return found


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Broker:
    """One Mosquitto process with a minimal config: anonymous, no persistence, loopback."""

    host = "127.0.0.1"

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_tcp_port()
        self.config = directory / "mosquitto.conf"
        self.log = directory / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        binary = mosquitto_path()
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        log = self.log.read_text() if self.log.exists() else ""
        raise RuntimeError(f"mosquitto did not accept connections on {self.address}: {log}")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None


@contextmanager
def running_mosquitto(directory: Path, port: int | None = None) -> Iterator[Broker]:
    broker = Broker(directory, port)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
