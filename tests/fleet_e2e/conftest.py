"""A small city on loopback: a real Mosquitto, gateway processes with their control channel
on (each behind a link the test can cut), ``simpul fleet serve`` as a process, and emulated
boards enrolled in fleet.db. What the fleet and the gateways say is read back from fleet.db,
from gateway.db, and from the broker (verified with the gateways' keys)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fleet import keys as fleet_keys
from fleet.release import build_release
from fleet.store import DB_NAME, FleetStore
from gateway.batches.keys import load_or_create
from gateway.codec import cose
from gateway.control import messages, topics
from hw.engines.base import BoardSpec
from hw.engines.fleet import Fleet
from tests.mosquitto import Broker
from tests.ota.conftest import firmware_copy
from tests.support import ROOT, GatewayProcess
from tests.tcp_link import TcpLink

PASSPHRASE = "correct horse battery staple"
SITES = ("Takengon", "Tegal", "Cimahi")


@dataclass
class Releases:
    """A fleet directory with root, release and operator keys, and two releases built in it."""

    dir: Path
    root_public: bytes
    good: Path
    #: Air boards' PM sensor goes silent: its readings are dropped before buffering.
    silent_pm: Path


@pytest.fixture(scope="session")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    base = tmp_path_factory.mktemp("fleet-keys")
    fleet_dir = base / "fleet"
    now = int(time.time()) - 60
    (base / "usb").mkdir()
    fleet_keys.init_fleet(fleet_dir, base / "usb" / "root.key", PASSPHRASE, now=now)
    fleet_keys.certify_operator(fleet_dir, base / "usb" / "root.key", PASSPHRASE, now=now)

    def build(version: str, src: Path | None = None) -> Path:
        kwargs: dict[str, Any] = {} if src is None else {"src": src}
        data, verified = build_release(fleet_dir, version=version, now=now, **kwargs)
        path = base / f"release-{verified.release.manifest.seq}.simpul"
        path.write_bytes(data)
        return path

    good = build("0.3.0")
    silent = firmware_copy(
        base / "silent-src",
        app=("readings.extend(values)", "readings.extend(v for v in values if v[0][:2] != 'pm')"),
    )
    return Releases(fleet_dir, fleet_keys.root_public_key(fleet_dir), good, build("0.3.1", silent))


def seq_of(release: Path) -> int:
    return int(release.stem.rsplit("-", 1)[1])


class Listener:
    """An MQTT client that keeps every gateway's events, verified with its key."""

    def __init__(self, broker: Broker, keys: dict[str, bytes]) -> None:
        self.keys = keys
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"listener-{os.getpid()}")
        self.client.on_connect = lambda c, u, f, r, p: self._on_connect(c)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._ready.wait(10)

    def _on_connect(self, client: mqtt.Client) -> None:
        client.subscribe(f"{topics.PREFIX}/+/+/{topics.EVENTS}", qos=1)
        self._ready.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        where = topics.parse_gateway_topic(message.topic)
        if where is None:
            return
        site, gateway, _ = where
        payload = messages.verify_up(
            bytes(message.payload), self.keys[gateway], site=site, gateway=gateway
        )
        with self._lock:
            for event in payload["events"]:
                self.events.append({**event, "gateway": gateway})

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["kind"] == kind]

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class City:
    """Everything of one test's city; :meth:`close` stops all of it."""

    root: Path
    fleet_dir: Path
    broker: Broker
    releases: Releases
    gateways: dict[str, GatewayProcess] = field(default_factory=dict)
    links: dict[str, TcpLink] = field(default_factory=dict)
    keys: dict[str, bytes] = field(default_factory=dict)
    boards: list[Fleet] = field(default_factory=list)
    serve_proc: subprocess.Popen[str] | None = None
    #: More arguments for ``simpul fleet serve`` (broker credentials, TLS).
    serve_args: list[str] = field(default_factory=list)
    listener: Listener | None = None

    @property
    def db_path(self) -> Path:
        return self.fleet_dir / DB_NAME

    def store(self) -> FleetStore:
        return FleetStore(self.db_path)

    def add_gateway(
        self, site: str, *, state_interval_s: int = 1, oscore: bool = False
    ) -> GatewayProcess:
        """A gateway process for ``site``; ``oscore``: plain CoAP off, so its boards reach it
        only with keys the fleet sealed to it (else the lab flag, as tests/support sets)."""
        site_id = site.lower()
        gateway_id = f"gw-{site_id}-1"
        state_dir = self.root / gateway_id
        identity = load_or_create(state_dir)  # the key a technician reads off the gateway
        public = cose.public_bytes(identity.current.private)
        self.keys[gateway_id] = public
        link = TcpLink((self.broker.host, self.broker.port))
        self.links[gateway_id] = link
        root_pub = self.root / "root.pub"
        root_pub.write_bytes((self.fleet_dir / "root.pub").read_bytes())
        gateway = GatewayProcess(
            state_dir,
            gateway_id=gateway_id,
            site=site_id,
            env={
                "SIMPUL_GATEWAY__OTA__ROOT_PUBLIC_KEY": str(root_pub),
                "SIMPUL_GATEWAY__CONTROL__ENABLED": "true",
                "SIMPUL_GATEWAY__CONTROL__STATE_INTERVAL_S": str(state_interval_s),
                "SIMPUL_GATEWAY__BROKER__ADDRESS": f"{link.host}:{link.port}",
                "SIMPUL_GATEWAY__UPLINKS__MQTT__ENABLED": "true",
                "SIMPUL_GATEWAY__UPLINKS__FILE__ENABLED": "false",
                "SIMPUL_GATEWAY__UPLINKS__BATCH_FILE__ENABLED": "false",
                "SIMPUL_GATEWAY__SECURITY__PLAIN_COAP": "false" if oscore else "true",
                "SIMPUL_GATEWAY__SECURITY__RELOAD_INTERVAL_MS": "100",
            },
        )
        self.gateways[gateway_id] = gateway
        with self.store() as store:
            if store.site(site_id) is None:
                store.add_site(site_id, site)
            store.add_gateway(gateway_id, site_id, public)
        return gateway

    def add_boards(
        self,
        gateway_id: str,
        count: int,
        *,
        config: dict[str, Any],
        engine: str = "cpython",
        kinds: tuple[str, ...] = ("air",),
        seed: int = 1,
    ) -> Fleet:
        gateway = self.gateways[gateway_id]
        assert gateway.site is not None
        site_id = gateway.site
        site = next(s for s in SITES if s.lower() == site_id)
        specs = [
            BoardSpec(
                board_id=f"{site_id}-{kinds[i % len(kinds)]}-{i:03d}",
                kind=kinds[i % len(kinds)],
                site=site,
                seed=seed * 1000 + i,
                config={"root_key": self.releases.root_public.hex(), **config},
            )
            for i in range(count)
        ]
        with self.store() as store:
            for spec in specs:
                store.enroll_board(
                    spec.board_id, kind=spec.kind, site_id=site_id, gateway_id=gateway_id
                )
        fleet = Fleet(specs, self.root / gateway_id, gateway.address, engine=engine)
        self.boards.append(fleet)
        return fleet

    def settings(self, **values: Any) -> None:
        with self.store() as store:
            for key, value in values.items():
                store.put_setting(key.replace("__", "."), value)

    def serve(self, cycle_s: float = 0.5) -> None:
        """``simpul fleet serve`` as a process, waiting for its ready line."""
        self.serve_proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fleet.cli",
                "fleet",
                "serve",
                "--fleet-dir",
                str(self.fleet_dir),
                "--broker",
                f"{self.broker.host}:{self.broker.port}",
                "--cycle",
                str(cycle_s),
                *self.serve_args,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=(self.root / "serve.log").open("a"),
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.serve_proc.stdout is not None
        line = self.serve_proc.stdout.readline()
        assert line.startswith("fleet serving"), self.serve_log()
        threading.Thread(target=self._drain_serve, daemon=True).start()

    def _drain_serve(self) -> None:
        proc = self.serve_proc
        if proc is not None and proc.stdout is not None:
            for _ in proc.stdout:
                pass

    def serve_log(self) -> str:
        path = self.root / "serve.log"
        return path.read_text()[-3000:] if path.exists() else ""

    def stop_serve(self) -> None:
        proc, self.serve_proc = self.serve_proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def listen(self) -> Listener:
        self.listener = Listener(self.broker, self.keys)
        return self.listener

    def rollout(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.simpul("rollout", *args)

    def fleet(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.simpul("fleet", *args)

    def simpul(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fleet.cli", *args, "--fleet-dir", str(self.fleet_dir)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "SIMPUL_OPERATOR": "siti"},
        )

    def gateway_db(self, gateway_id: str, sql: str) -> list[tuple[Any, ...]]:
        path = self.gateways[gateway_id].state_dir / "gateway.db"
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()

    async def stop_boards(self) -> None:
        for fleet in self.boards:
            await fleet.stop()
        self.boards.clear()

    def close(self) -> None:
        self.stop_serve()
        if self.listener is not None:
            self.listener.stop()
        for gateway in self.gateways.values():
            with contextlib.suppress(Exception):
                gateway.stop()
        for link in self.links.values():
            link.close()
        self.broker.stop()


@pytest.fixture
def city(tmp_path: Path, releases: Releases) -> Iterator[City]:
    fleet_dir = tmp_path / "fleet"
    shutil.copytree(releases.dir, fleet_dir)
    broker = Broker(tmp_path / "mosquitto")
    broker.start()
    FleetStore(fleet_dir / DB_NAME).close()
    built = City(tmp_path, fleet_dir, broker, releases)
    try:
        yield built
    finally:
        built.close()
