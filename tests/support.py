"""Helpers the integration and fault tests share: a real gateway process, its upstream."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
READY = re.compile(r"listening on coap://(?P<host>[^ ]+):(?P<port>\d+)")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProcess:
    """``simpul gateway run`` as its own process, on a fixed port so restarts keep it."""

    def __init__(self, state_dir: Path, port: int | None = None, gateway_id: str = "gw-test"):
        self.state_dir = state_dir
        self.port = port or free_udp_port()
        self.gateway_id = gateway_id
        self.proc: subprocess.Popen[str] | None = None
        self.log = state_dir.parent / f"{state_dir.name}.log"

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self, timeout: float = 30.0) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "fleet.cli",
            "gateway",
            "run",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--state-dir",
            str(self.state_dir),
            "--gateway-id",
            self.gateway_id,
            "--site",
            "Test site",
        ]
        log = self.log.open("a")
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if READY.search(line):
                return
            if not line and self.proc.poll() is not None:
                break
        self.proc.kill()
        raise RuntimeError(f"gateway did not start; see {self.log}: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.terminate()
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def stored(self) -> set[tuple[str, str, int]]:
        """(board, name, time_ms) of every reading in the gateway's store."""
        db = sqlite3.connect(f"file:{self.state_dir / 'gateway.db'}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT board_id, name, time_ms FROM readings").fetchall()
        finally:
            db.close()
        return {(b, n, int(t)) for b, n, t in rows}

    def upstream(self) -> list[dict[str, Any]]:
        """Every line the file uplink wrote, in order."""
        lines: list[dict[str, Any]] = []
        for path in sorted((self.state_dir / "uplink").glob("*.jsonl")):
            lines.extend(json.loads(raw) for raw in path.read_text().splitlines())
        return lines


def wait_until(predicate: Any, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def iter_console(board_dir: Path) -> Iterator[str]:
    path = board_dir / "console.log"
    if path.exists():
        yield from path.read_text().splitlines()
