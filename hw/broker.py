"""A private Mosquitto broker on a free loopback port: the demo's, and the tests'.

    broker = Mosquitto(state_dir / "mosquitto")
    broker.start()          # waits until it accepts connections
    ...
    broker.stop()

It needs the Debian package ``mosquitto``: the binary is ``$SIMPUL_MOSQUITTO``, else
``mosquitto`` on PATH, else ``/usr/sbin/mosquitto`` (Debian installs it outside a user's PATH).
:meth:`Mosquitto.stop` and :meth:`Mosquitto.start` stop and restart it on the same port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Final

MOSQUITTO_ENV: Final = "SIMPUL_MOSQUITTO"
DEBIAN_PATH: Final = "/usr/sbin/mosquitto"
START_TIMEOUT_S: Final = 10.0


class MosquittoMissing(RuntimeError):
    """No Mosquitto binary on this machine; the message says what to install."""


def find_mosquitto() -> str:
    """The broker binary, or :class:`MosquittoMissing` naming the package to install."""
    explicit = os.environ.get(MOSQUITTO_ENV)
    for candidate in (explicit,) if explicit else ("mosquitto", DEBIAN_PATH):
        found = shutil.which(candidate)
        if found is not None:
            return found
    where = explicit or f"PATH or {DEBIAN_PATH}"
    raise MosquittoMissing(
        f"Mosquitto not found in {where}: install the Debian package 'mosquitto'"
        f" (apt-get install mosquitto) or set {MOSQUITTO_ENV} to the broker binary"
    )


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Mosquitto:
    """One Mosquitto process with a minimal config in ``directory``: anonymous, no
    persistence, loopback only, errors and notices logged to ``mosquitto.log`` there."""

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

    def binary(self) -> str:
        """The broker binary to run (:func:`find_mosquitto`)."""
        return find_mosquitto()

    def start(self) -> None:
        """Start the broker and wait until it accepts connections, or raise RuntimeError."""
        self.proc = subprocess.Popen(
            [self.binary(), "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own session: a Ctrl-C meant for the program that started it stays there.
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
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
