"""The demo's city: the whole system on this machine, built, run and stopped in order.

A private Mosquitto; a fleet directory with its keys (root, release, operator) and fleet.db,
every site, gateway and board enrolled in it; one ``simpul gateway run`` per site, its
control channel and MQTT uplink on that broker; ``simpul fleet serve`` on the same broker;
an :class:`~hw.demo.upstream.Upstream` consumer verifying every batch the gateways deliver;
and the emulated boards in this process's event loop, each site's at its gateway, speaking
OSCORE to it with keys made at the first run (on each board's flash and in its gateway's
keys file; plain CoAP is off).

Every process it starts runs in a session of its own (a Ctrl-C at the terminal reaches the
demo only, which then stops them in order: boards, fleet manager, gateways, broker) and is
swept with its whole process group at the end, so nothing outlives the demo. Their output
goes to ``<state dir>/logs/``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fleet import keys as fleet_keys
from fleet.keys import FleetDir
from fleet.link import BrokerSettings
from fleet.store import DB_NAME, FleetStore
from gateway.batches.keys import load_or_create
from gateway.codec import cose
from gateway.oscore.keys import BoardKey, decode_keys_file, encode_keys_file, generate
from hw.broker import Mosquitto
from hw.demo.summary import SiteFigures
from hw.demo.upstream import Upstream
from hw.engines.base import BoardSpec
from hw.engines.fleet import SITES, Fleet, cycle_config, plan_fleet
from hw.signals import find_site

#: How long a process of the demo may take to say it is ready.
READY_TIMEOUT_S: Final = 60.0
#: How long a process of the demo may take to stop after SIGTERM before it is killed.
STOP_TIMEOUT_S: Final = 15.0
#: Who the demo's changes to fleet.db are audited as.
DEMO_OPERATOR: Final = "simpul-demo"

_GATEWAY_READY = re.compile(r"^simpul gateway \S+ listening on coap://[^\s]+:(?P<port>\d+) ")
_SERVE_READY = re.compile(r"^fleet serving ")


@dataclass(frozen=True, slots=True)
class DemoSite:
    """One site of the demo: its gateway and the boards enrolled under it."""

    name: str
    boards: tuple[BoardSpec, ...]

    @property
    def site_id(self) -> str:
        return self.name.lower().replace(" ", "_")

    @property
    def gateway_id(self) -> str:
        return f"gw-{self.site_id.replace('_', '-')}-1"

    @property
    def flood_levels(self) -> dict[str, float]:
        """Siaga IV..I for the site's river gauge, in metres above its datum: set above the
        river's stage between storms (``hw.signals``), so a storm's rise reaches the lower
        levels as a real one would."""
        base_m = find_site(self.name).river_base_mm / 1000
        return {
            "siaga4": round(base_m + 0.4, 2),
            "siaga3": round(base_m + 0.8, 2),
            "siaga2": round(base_m + 1.3, 2),
            "siaga1": round(base_m + 1.9, 2),
        }


def plan_sites(boards: int, sites: int, cycle: float, root_key: bytes) -> list[DemoSite]:
    """``boards`` boards spread over the first ``sites`` of the programme's sites."""
    names = SITES[: max(1, min(sites, len(SITES), boards))]
    config = {**cycle_config(cycle), "root_key": root_key.hex()}
    specs = plan_fleet(boards, 1, config, sites=names)
    return [DemoSite(name, tuple(s for s in specs if s.site == name)) for name in names]


class DemoProcess:
    """One process of the demo (a gateway, the fleet manager) in a session of its own, its
    stdout and stderr in ``log``; ready when a line of its output matches ``ready``."""

    def __init__(self, name: str, command: list[str], log: Path, ready: re.Pattern[str]) -> None:
        self.name = name
        self.command = command
        self.log = log
        self.ready_line = ready
        self.proc: subprocess.Popen[bytes] | None = None
        #: Its ready line, once it said it.
        self.ready: re.Match[str] | None = None

    def start(self) -> re.Match[str]:
        """Start it and wait for its ready line (RuntimeError, with its log's end, if none)."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            for line in self.log.read_text(errors="replace").splitlines():
                found = self.ready_line.match(line)
                if found:
                    self.ready = found
                    return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        tail = self.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{self.name} did not start (log {self.log}):\n{tail}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to what is left of its process group; safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_TIMEOUT_S)
        # Its helpers (a gateway's writer and uplinks) are in its process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(STOP_TIMEOUT_S)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid


def _simpul(*args: str) -> list[str]:
    return [sys.executable, "-m", "fleet.cli", *args]


class DemoCity:
    """Everything of one demo under ``state_dir``; :meth:`start`, then :meth:`stop` (always)."""

    def __init__(self, state_dir: Path, boards: int, sites: int, cycle: float) -> None:
        self.state_dir = state_dir
        self.cycle = cycle
        self.fleet_dir = state_dir / "fleet"
        self.logs = state_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.broker = Mosquitto(state_dir / "mosquitto")
        self.broker_settings = BrokerSettings(self.broker.host, self.broker.port)
        self.root_key = self._fleet_keys()
        self.sites = plan_sites(boards, sites, cycle, self.root_key)
        self.gateways: dict[str, DemoProcess] = {}
        self.serve: DemoProcess | None = None
        self.upstream = Upstream(self.broker.host, self.broker.port)
        self.fleets: list[Fleet] = []
        self._boards_stopped = False

    @property
    def boards(self) -> list[BoardSpec]:
        return [b for site in self.sites for b in site.boards]

    @property
    def processes(self) -> list[DemoProcess]:
        """The processes the demo started and has not stopped yet."""
        started = [*self.gateways.values(), *([self.serve] if self.serve else [])]
        return [p for p in started if p.proc is not None]

    def gateway_dir(self, site: DemoSite) -> Path:
        return self.state_dir / site.gateway_id

    def _fleet_keys(self) -> bytes:
        """The fleet's keys, made on the first run in this state directory: a root key (its
        passphrase used once and forgotten: the demo never rotates), the release key and the
        operator key it certifies. The root public key."""
        if not FleetDir(self.fleet_dir).initialised():
            root_dir = self.state_dir / "root"
            root_dir.mkdir(exist_ok=True)
            passphrase = secrets.token_urlsafe(24)
            now = int(time.time()) - 60
            fleet_keys.init_fleet(self.fleet_dir, root_dir / "root.key", passphrase, now=now)
            fleet_keys.certify_operator(self.fleet_dir, root_dir / "root.key", passphrase, now=now)
        return fleet_keys.root_public_key(self.fleet_dir)

    async def start(self) -> None:
        """Broker, fleet.db, gateways, fleet manager, upstream consumer, then the boards."""
        self.broker.start()
        self._enroll()
        for site in self.sites:
            self._start_gateway(site)
        self.serve = DemoProcess(
            "simpul fleet serve",
            _simpul("fleet", "serve", "--fleet-dir", str(self.fleet_dir),
                    "--broker", self.broker.address, "--cycle", "1"),
            self.logs / "fleet-serve.log",
            _SERVE_READY,
        )  # fmt: skip
        self.serve.start()
        self.upstream.start()
        for site in self.sites:
            gateway = self.gateways[site.gateway_id]
            assert gateway.ready is not None  # started
            port = int(gateway.ready["port"])
            fleet = Fleet(list(site.boards), self.state_dir, ("127.0.0.1", port))
            keys = self._board_keys(site)
            fleet.provision_oscore({key.board_id: key.material for key in keys})
            fleet.start()
            self.fleets.append(fleet)

    def _enroll(self) -> None:
        """Every site, gateway (with its batch key) and board in fleet.db, once."""
        with FleetStore(self.fleet_dir / DB_NAME) as store:
            for site in self.sites:
                if store.site(site.site_id) is None:
                    store.add_site(site.site_id, site.name, flood_levels=site.flood_levels)
                    store.append_audit(
                        DEMO_OPERATOR, "sites.add", site.site_id, {"flood": site.flood_levels}, "ok"
                    )
                # The key a technician would read off the gateway, made before its first run.
                identity = load_or_create(self.gateway_dir(site))
                public = cose.public_bytes(identity.current.private)
                if store.gateway(site.gateway_id) is None:
                    store.add_gateway(site.gateway_id, site.site_id, public)
                    store.append_audit(DEMO_OPERATOR, "gateways.add", site.gateway_id, {}, "ok")
                self.upstream.trust(site.site_id, public)
                for board in site.boards:
                    if store.board(board.board_id) is None:
                        store.enroll_board(
                            board.board_id,
                            kind=board.kind,
                            site_id=site.site_id,
                            gateway_id=site.gateway_id,
                        )
                        store.append_audit(DEMO_OPERATOR, "boards.add", board.board_id, {}, "ok")

    def keys_file(self, site: DemoSite) -> Path:
        """The site's board keys, as its gateway imports them (``security.keys_file``)."""
        return self.gateway_dir(site) / "boards.keys.json"

    def _board_keys(self, site: DemoSite) -> list[BoardKey]:
        """OSCORE key material for each board of ``site`` (Sender IDs 1, 2, … in two bytes),
        made on the first run and kept in the gateway's keys file: what provisioning writes
        to a board and enrolment gives its gateway."""
        path = self.keys_file(site)
        if path.exists():
            return decode_keys_file(path.read_bytes())
        keys = [generate(b.board_id, i.to_bytes(2, "big")) for i, b in enumerate(site.boards, 1)]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(encode_keys_file(keys))
        tmp.chmod(0o600)
        tmp.replace(path)
        return keys

    def _start_gateway(self, site: DemoSite) -> None:
        state_dir = self.gateway_dir(site)
        self._board_keys(site)
        config = state_dir / "gateway.toml"
        config.write_text(
            "# Written by simpul demo: this gateway's settings (see gateway/config.py).\n"
            "[gateway]\n"
            f'gateway_id = "{site.gateway_id}"\n'
            f'site = "{site.site_id}"\n'
            f'state_dir = "{state_dir}"\n'
            'bind = { host = "127.0.0.1", port = 0 }\n\n'
            "[gateway.broker]\n"
            f'address = "{self.broker.address}"\n\n'
            "[gateway.control]\n"
            "enabled = true\n"
            f"state_interval_s = {max(1, round(self.cycle))}\n\n"
            "[gateway.ota]\n"
            f'root_public_key = "{self.fleet_dir / "root.pub"}"\n\n'
            "[gateway.security]\n"
            "plain_coap = false\n"
            f'keys_file = "{self.keys_file(site)}"\n\n'
            "[gateway.uplinks.mqtt]\n"
            "enabled = true\n\n"
            "[gateway.uplinks.file]\n"
            "enabled = false\n"
        )
        gateway = DemoProcess(
            site.gateway_id,
            _simpul("gateway", "run", "--config", str(config)),
            self.logs / f"{site.gateway_id}.log",
            _GATEWAY_READY,
        )
        gateway.start()
        self.gateways[site.gateway_id] = gateway

    def stored(self) -> dict[str, int]:
        """Readings each site's gateway has made durable, by site id (from its gateway.db)."""
        return {site.site_id: _stored_readings(self.gateway_dir(site)) for site in self.sites}

    def recorded(self) -> dict[str, int]:
        """Readings the fleet manager recorded in fleet.db from verified batches, by site id."""
        site_of = {b.board_id: site.site_id for site in self.sites for b in site.boards}
        counts: dict[str, int] = {}
        with FleetStore(self.fleet_dir / DB_NAME, create=False) as store:
            for summary in store.summaries():
                site = site_of.get(summary.board_id)
                if site is not None:
                    counts[site] = counts.get(site, 0) + summary.count
        return counts

    def figures(self) -> list[SiteFigures]:
        """Where each site's readings are now (reads gateway.db and fleet.db: call it from a
        thread when an event loop runs)."""
        stored, recorded, delivered = self.stored(), self.recorded(), self.upstream.delivered()
        online_within = 3 * self.cycle + 5
        found = []
        for site, fleet in zip(self.sites, self.fleets, strict=True):
            found.append(
                SiteFigures(
                    site_id=site.site_id,
                    gateway_id=site.gateway_id,
                    boards=len(site.boards),
                    online=fleet.online(online_within),
                    sampled=fleet.sampled_readings(),
                    buffered=fleet.buffered_readings(),
                    buffered_samples=fleet.buffered(),
                    stored=stored.get(site.site_id, 0),
                    delivered=delivered.get(site.site_id, 0),
                    recorded=recorded.get(site.site_id, 0),
                    latest=self.upstream.latest(site.site_id),
                )
            )
        return found

    async def stop_boards(self) -> None:
        """Stop the boards (what they buffered stays in their flash); safe to call twice."""
        if not self._boards_stopped:
            self._boards_stopped = True
            for fleet in self.fleets:
                await fleet.stop()

    async def stop(self) -> None:
        """Stop everything that was started, boards first; safe after a failed start."""
        try:
            await self.stop_boards()
        finally:
            for process in [*([self.serve] if self.serve else []), *self.gateways.values()]:
                process.stop()
            self.upstream.stop()
            self.broker.stop()


def _stored_readings(gateway_dir: Path) -> int:
    """The readings outbox's last position: every reading ever stored, pruned ones included
    (positions are AUTOINCREMENT, never reused, and a repeated reading takes none)."""
    path = gateway_dir / "gateway.db"
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'readings'").fetchone()
    except sqlite3.Error:  # not created yet
        return 0
    finally:
        db.close()
    return 0 if row is None else int(row[0])
