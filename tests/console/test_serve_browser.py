"""``simpul fleet --serve`` in a real browser: Debian's Chromium, headless, driven by playwright
(never a downloaded browser). The page's terminal draws on a canvas, so what it shows is read
from the bytes the server sends it over the page's websocket, ANSI sequences removed."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from fleet.store import DB_NAME, FleetStore
from tests.mosquitto import free_tcp_port
from tests.support import ROOT, TEST_MARK_ENV, processes_marked

CHROMIUM = os.environ.get("SIMPUL_CHROMIUM", "/usr/bin/chromium")
BOARDS = ("tgl-air-0001", "tgl-water-0002", "tkn-air-0003")
#: CSI and OSC escape sequences, and the other two-byte escapes.
_ANSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]")


class TerminalText:
    """Everything the page's terminal was sent, as text (thread-safe: playwright's events)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._lock = threading.Lock()

    def add(self, payload: bytes | str) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        with self._lock:
            self._chunks.append(data)

    def mark(self) -> int:
        with self._lock:
            return len(self._chunks)

    def since(self, mark: int = 0) -> str:
        with self._lock:
            data = b"".join(self._chunks[mark:])
        return _ANSI.sub(b"", data).decode("utf-8", "replace")


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    fleet_dir = tmp_path / "fleet"
    fleet_dir.mkdir()
    with FleetStore(fleet_dir / DB_NAME) as store:
        for n, (site, name) in enumerate((("tegal", "Tegal"), ("takengon", "Takengon"))):
            store.add_site(site, name)
            store.add_gateway(f"gw-{site}-1", site, bytes([n]) * 32)
        for board in BOARDS:
            site = "tegal" if board.startswith("tgl") else "takengon"
            kind = board.split("-")[1]
            store.enroll_board(board, kind=kind, site_id=site, gateway_id=f"gw-{site}-1")
    return fleet_dir


@pytest.fixture
def served(fleet_dir: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``simpul fleet --serve`` on a free port; (its URL, the marker in its processes' env)."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install the Debian package 'chromium'"
            " (apt-get install chromium) or set SIMPUL_CHROMIUM",
            pytrace=False,
        )
    port = free_tcp_port()
    marker = uuid.uuid4().hex
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleet.cli", "fleet", "--fleet-dir", str(fleet_dir),
         "--refresh", "0.5", "--serve", f"127.0.0.1:{port}"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, TEST_MARK_ENV: marker},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail(
                f"simpul fleet --serve did not listen: {(tmp_path / 'serve.log').read_text()}"
            )
        yield f"http://127.0.0.1:{port}/", marker
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            log.close()
        assert processes_marked(marker) == [], "a process of the server outlived it"


def wait_for(
    what: str, predicate: Callable[[], bool], timeout_s: float, pause: Callable[[], None]
) -> None:
    """Poll ``predicate``; ``pause`` between polls (in a page: its own wait, since playwright
    delivers the page's events only while it is called)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        pause()
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_served_console_shows_the_fleet_in_chromium_and_answers_keys(
    served: tuple[str, str],
) -> None:
    url, marker = served
    terminal = TerminalText()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("websocket", lambda ws: ws.on("framereceived", terminal.add))
            page.goto(url)
            wait_for(
                "the fleet screen in the browser",
                lambda: "Boards online" in terminal.since() and "gw-tegal-1" in terminal.since(),
                30,
                lambda: page.wait_for_timeout(100),
            )
            assert "0/3" in terminal.since()
            # Whoever reaches the page watches; actions are for a console in a terminal.
            assert "(read-only)" in terminal.since()
            mark = terminal.mark()
            page.click(".xterm-screen")
            page.keyboard.press("b")
            wait_for(
                "the Boards screen after 'b'",
                lambda: (
                    "Filter: id, site" in terminal.since(mark)
                    and all(board in terminal.since(mark) for board in BOARDS)
                ),
                20,
                lambda: page.wait_for_timeout(100),
            )
            # The console the browser drives is a process of the server's, gone with the page.
            assert len(processes_marked(marker)) >= 2
        finally:
            browser.close()
    wait_for(
        "the page's console to end",
        lambda: len(processes_marked(marker)) == 1,
        15,
        lambda: time.sleep(0.1),
    )
