"""``simpul fleet serve``: the fleet manager as a service.

It connects to the broker the gateways use, takes in their signed state, events, replies and
batches, keeps fleet.db up to date, judges rollouts, and publishes each gateway's signed
desired-state document when it changes (``fleet.engine``). Stopping it loses nothing: the
gateways act on their last documents alone, and their retained state comes again when it
starts.

It prints one ready line once connected (``fleet serving <fleet dir> via <broker>``), a line
per change it publishes, and exits on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Final

from fleet.engine import FleetEngine
from fleet.errors import FleetError
from fleet.keys import FLEET_DIR_ENV, default_fleet_dir
from fleet.link import BrokerSettings, FleetLink
from fleet.store import DB_NAME, FleetStore

BROKER_ENV: Final = "SIMPUL_FLEET_BROKER"
DEFAULT_CYCLE_S: Final = 2.0
CONNECT_TIMEOUT_S: Final = 30.0

log = logging.getLogger(__name__)


def serve(
    fleet_dir: Path,
    settings: BrokerSettings,
    *,
    cycle_s: float = DEFAULT_CYCLE_S,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
) -> int:
    """Run until ``stop`` is set (or SIGTERM); the exit code."""
    stop = stop or threading.Event()
    store = FleetStore(fleet_dir / DB_NAME)
    link = FleetLink(settings)
    engine = FleetEngine(fleet_dir, store, link)
    try:
        link.start()
        if not link.wait_connected(CONNECT_TIMEOUT_S):
            print(
                f"simpul fleet serve: error: broker {settings.host}:{settings.port} did not"
                f" answer in {CONNECT_TIMEOUT_S:.0f} s",
                file=sys.stderr,
            )
            return 1
        engine.republish()
        print(f"fleet serving {fleet_dir} via {settings.host}:{settings.port}", flush=True)
        if ready is not None:
            ready.set()
        next_tick = 0.0
        while not stop.is_set():
            engine.handle(link.wait(min(cycle_s, 0.5)))
            now = time.monotonic()
            if now >= next_tick:
                for gateway in engine.tick():
                    print(f"published desired state for {gateway}", flush=True)
                next_tick = now + cycle_s
        return 0
    finally:
        link.stop()
        store.close()


def add_commands(fleet_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = fleet_commands.add_parser(
        "serve",
        help="run the fleet manager: take in gateways' state, publish desired state",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument(
        "--fleet-dir",
        type=Path,
        default=None,
        help=f"the fleet directory (default: ${FLEET_DIR_ENV}, else $XDG_DATA_HOME/simpul/fleet)",
    )
    parser.add_argument(
        "--broker",
        default=os.environ.get(BROKER_ENV, "127.0.0.1:1883"),
        metavar="HOST:PORT",
        help=f"the MQTT broker the gateways use (default: ${BROKER_ENV}, else %(default)s)",
    )
    parser.add_argument("--username", help="broker user name")
    parser.add_argument(
        "--password-file", type=Path, metavar="FILE", help="broker password, read from FILE"
    )
    parser.add_argument(
        "--tls-ca", type=Path, metavar="FILE", help="connect with TLS, trusting this CA file"
    )
    parser.add_argument(
        "--cycle",
        type=float,
        default=DEFAULT_CYCLE_S,
        metavar="SECONDS",
        help="how often rollouts are judged and documents published (default: %(default)s)",
    )
    parser.set_defaults(handler=_serve_command)


def _serve_command(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    fleet_dir = args.fleet_dir or default_fleet_dir()
    try:
        settings = BrokerSettings.parse(
            args.broker,
            username=args.username,
            password_file=args.password_file,
            tls_ca_file=args.tls_ca,
        )
        if not (fleet_dir / DB_NAME).exists():
            raise FleetError(f"no fleet.db in {fleet_dir}: run 'simpul fleet init' first")
    except (ValueError, FleetError) as exc:
        print(f"simpul fleet serve: error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        return serve(fleet_dir, settings, cycle_s=args.cycle, stop=stop)
    except KeyboardInterrupt:
        return 130
    except FleetError as exc:
        print(f"simpul fleet serve: error: {exc}", file=sys.stderr)
        return 1


__all__ = ["serve"]
