"""``simpul demo``, as the README's Quick start runs it: the whole system on this machine.

Headless with --duration, its readings reach the gateways, upstream (verified batches on the
broker) and the fleet (fleet.db); with --console in a real tmux, the fleet console shows the
demo's boards online and answers keys; either way, no process of it outlives it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.store import DB_NAME, FleetStore
from tests.support import ROOT, TEST_MARK_ENV, processes_marked

SUMMARY = re.compile(
    r"(?P<boards>\d+) boards at (?P<sites>\d+) sites for \d+ s: (?P<sampled>\d+) readings "
    r"sampled, (?P<stored>\d+) stored by the gateways, (?P<delivered>\d+) delivered upstream, "
    r"(?P<recorded>\d+) recorded in fleet.db"
)
#: The demo's table: site, gateway, boards, sampled, stored, upstream, fleet.db, latest.
SITE_ROW = re.compile(
    r"^(?P<site>\S+)\s+(?P<gateway>gw-\S+)\s+(?P<boards>\d+)\s+(?P<sampled>\d+)\s+"
    r"(?P<stored>\d+)\s+(?P<delivered>\d+)\s+(?P<recorded>\d+)",
    re.MULTILINE,
)
#: Two sites with two boards each, sampling twice a second.
SMALL_DEMO = ("--boards", "4", "--sites", "2", "--cycle", "0.5")


def demo_command(state_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "fleet.cli", "demo", *SMALL_DEMO, "--state-dir", str(state_dir),
            *args]  # fmt: skip


@pytest.mark.slow
def test_demo_headless_delivers_every_site_s_readings_upstream_and_to_the_fleet(
    tmp_path: Path,
) -> None:
    marker = uuid.uuid4().hex
    done = subprocess.run(
        demo_command(tmp_path, "--duration", "8"),
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, TEST_MARK_ENV: marker},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert processes_marked(marker) == [], "a process of the demo outlived it"
    found = SUMMARY.search(done.stdout)
    assert found, done.stdout
    assert (found["boards"], found["sites"]) == ("4", "2")
    sampled, stored, delivered, recorded = (
        int(found[k]) for k in ("sampled", "stored", "delivered", "recorded")
    )
    assert 0 < recorded == delivered == stored <= sampled
    rows = {row["site"]: row for row in SITE_ROW.finditer(done.stdout)}
    assert set(rows) == {"takengon", "tegal"}, done.stdout
    # Every board held OSCORE keys, and its gateway took nothing else (plain CoAP off).
    flashes = [d / "flash" for d in (tmp_path / "boards").iterdir()]
    assert len(flashes) == 4
    assert all((f / "oscore.json").exists() for f in flashes), flashes
    tomls = list(tmp_path.glob("gw-*/gateway.toml"))
    assert len(tomls) == 2
    assert all("plain_coap = false" in t.read_text() for t in tomls)
    for row in rows.values():
        assert row["boards"] == "2"
        assert 0 < int(row["recorded"]) == int(row["delivered"]) == int(row["stored"])
    # fleet.db: every board was seen through its gateway's state and has readings recorded
    # from verified batches.
    with FleetStore(tmp_path / "fleet" / DB_NAME, create=False) as store:
        boards = store.boards()
        assert len(boards) == 4
        for board in boards:
            assert board.last_seen_ms is not None, board
            assert store.summaries(board.board_id), board.board_id
        assert sum(s.count for s in store.summaries()) == recorded
        # Each site's river gauge has its flood alert levels, so the console can say the Siaga.
        for site in store.sites():
            levels = site.flood_levels or {}
            assert set(levels) == {"siaga1", "siaga2", "siaga3", "siaga4"}, site
    # Each gateway's batches were also kept in a file that the command the demo names checks.
    checks = re.findall(r"check them with: simpul (verify .*)$", done.stdout, re.MULTILINE)
    assert len(checks) == 2, done.stdout
    verified = subprocess.run(
        [sys.executable, "-m", "fleet.cli", *shlex.split(checks[0])],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert "OK: every batch verified" in verified.stdout


class Tmux:
    """A tmux server of the test's own (its own socket), one session at 160x50."""

    def __init__(self, name: str) -> None:
        self.socket = name

    def run(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        return done.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "demo")

    def wait_for(self, text: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.3)
        raise AssertionError(f"{text!r} not on screen after {timeout_s} s:\n{self.screen()}")

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "demo", *keys)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    server = Tmux(f"simpul-test-{uuid.uuid4().hex[:8]}")
    try:
        yield server
    finally:
        subprocess.run(
            ["tmux", "-L", server.socket, "kill-server"], capture_output=True, timeout=30
        )


@pytest.mark.slow
def test_demo_console_shows_the_fleet_live_in_tmux_and_q_stops_everything(
    tmp_path: Path, tmux: Tmux
) -> None:
    marker = uuid.uuid4().hex
    command = shlex.join(demo_command(tmp_path, "--console"))
    tmux.run(
        "new-session", "-d", "-s", "demo", "-x", "160", "-y", "50", "-c", str(ROOT),
        "-e", f"{TEST_MARK_ENV}={marker}", "-e", f"PYTHONPATH={ROOT}", command,
        ";", "set-option", "-t", "demo", "remain-on-exit", "on",
    )  # fmt: skip
    # The fleet manager takes in the gateways' state: the boards come online in the console.
    screen = tmux.wait_for("Boards online 4/4", 60)
    assert "gw-takengon-1" in screen
    assert "gw-tegal-1" in screen
    tmux.keys("b")
    screen = tmux.wait_for("Filter: id, site", 10)
    assert "tkn-air-0001" in screen
    # Keys that come while the screen is still being switched to can go astray: settle first.
    time.sleep(1)
    tmux.keys("/")
    tmux.keys("-l", "tgl-air")
    screen = tmux.wait_for("▊  tgl-air", 10)
    deadline = time.monotonic() + 10
    while "tkn-air-0001" in screen and time.monotonic() < deadline:
        time.sleep(0.3)
        screen = tmux.screen()
    assert "tkn-air-0001" not in screen, screen
    assert "tgl-air-0002" in screen
    assert "online" in screen
    tmux.keys("Escape")  # clears the filter; a key right after it would read as Alt+key
    tmux.wait_for("4 of 4 boards", 10)
    tmux.keys("q")
    # The demo stops everything it started, then prints where the readings got to.
    screen = tmux.wait_for("recorded in fleet.db", 60)
    assert "simpul demo: 4 boards at 2 sites" in screen
    deadline = time.monotonic() + 10
    while processes_marked(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_marked(marker) == [], "a process of the demo outlived it"
