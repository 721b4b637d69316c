"""The console runs the fleet engine itself only when given a broker and nobody holds the
fleet directory's serve lock; ``simpul fleet serve`` refuses to start while it is held."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet import keys as fleet_keys
from fleet.console.cli import ENGINE_SUBTITLE, READER_SUBTITLE, open_console
from fleet.link import BrokerSettings
from fleet.serve import ServeLock
from fleet.store import DB_NAME, FleetStore
from tests.mosquitto import Broker, running_mosquitto
from tests.support import ROOT

GATEWAY = "gw-tegal-1"


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    """A fleet with its keys (the operator's among them), one gateway and a board."""
    fleet_dir = tmp_path / "fleet"
    (tmp_path / "usb").mkdir()
    root, passphrase = tmp_path / "usb" / "root.key", "a passphrase long enough"
    now = int(time.time()) - 60
    fleet_keys.init_fleet(fleet_dir, root, passphrase, now=now)
    fleet_keys.certify_operator(fleet_dir, root, passphrase, now=now)
    with FleetStore(fleet_dir / DB_NAME) as store:
        store.add_site("tegal", "Tegal")
        store.add_gateway(GATEWAY, "tegal", bytes(range(32)))
        store.enroll_board("tgl-air-0001", kind="air", site_id="tegal", gateway_id=GATEWAY)
    return fleet_dir


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with running_mosquitto(tmp_path / "mosquitto") as broker:
        yield broker


def published_document(fleet_dir: Path, within_s: float) -> bool:
    """Whether the fleet engine published the gateway's desired state within ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        with FleetStore(fleet_dir / DB_NAME) as store:
            if store.desired(GATEWAY) is not None:
                return True
        time.sleep(0.2)
    return False


async def test_console_with_a_broker_and_no_serve_runs_the_fleet_engine(
    fleet_dir: Path, broker: Broker
) -> None:
    settings = BrokerSettings(broker.host, broker.port)
    app, engine = open_console(fleet_dir, settings, "siti", refresh_s=0.2)
    assert engine is not None
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            assert app.sub_title == ENGINE_SUBTITLE
            assert published_document(fleet_dir, 20)
            # While it runs, no 'simpul fleet serve' can start beside it.
            assert not ServeLock(fleet_dir).acquire()
    finally:
        engine.close()
    assert not engine.running
    assert ServeLock(fleet_dir).acquire()  # released with the console


async def test_console_only_reads_while_serve_holds_the_lock(
    fleet_dir: Path, broker: Broker
) -> None:
    serving = ServeLock(fleet_dir)  # as 'simpul fleet serve' holds it
    assert serving.acquire()
    try:
        app, engine = open_console(
            fleet_dir, BrokerSettings(broker.host, broker.port), "siti", refresh_s=0.2
        )
        assert engine is None
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            assert app.sub_title == READER_SUBTITLE
            assert not published_document(fleet_dir, 2)
    finally:
        serving.release()


def test_console_without_a_broker_never_takes_the_lock(fleet_dir: Path) -> None:
    _, engine = open_console(fleet_dir, None, "siti", refresh_s=0.2)
    assert engine is None
    assert ServeLock(fleet_dir).acquire()


def test_fleet_serve_refuses_to_start_while_the_lock_is_held(fleet_dir: Path) -> None:
    held = ServeLock(fleet_dir)
    assert held.acquire()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "fleet.cli", "fleet", "serve", "--fleet-dir", str(fleet_dir),
             "--broker", "127.0.0.1:9"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        held.release()
    assert done.returncode == 1
    assert f"already runs in process {os.getpid()}" in done.stderr
