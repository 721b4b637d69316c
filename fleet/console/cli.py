"""``simpul fleet console``: the operator's console over fleet.db.

Textual is imported only when the console runs, so the other commands start as fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fleet.keys import FLEET_DIR_ENV, default_fleet_dir
from fleet.link import BrokerSettings
from fleet.serve import BROKER_ENV
from fleet.store import DB_NAME


def run(args: argparse.Namespace) -> int:
    fleet_dir: Path = args.fleet_dir or default_fleet_dir()
    if not (fleet_dir / DB_NAME).exists():
        print(
            f"simpul fleet console: no fleet database at {fleet_dir / DB_NAME}:"
            " run 'simpul fleet init' first",
            file=sys.stderr,
        )
        return 1
    from fleet.console.app import ConsoleApp
    from fleet.console.backend import StoreBackend
    from fleet.inventory import operator_name

    try:
        broker = None if args.broker is None else BrokerSettings.parse(args.broker)
    except ValueError as exc:
        print(f"simpul fleet console: --broker: {exc}", file=sys.stderr)
        return 2
    backend = StoreBackend(fleet_dir, operator=operator_name(None), broker=broker)
    ConsoleApp(backend, refresh_s=args.refresh).run()
    return 0


def add_commands(fleet_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = fleet_commands.add_parser(
        "console",
        help="the operator's console: the fleet live in the terminal",
        description="The operator's console: sites, gateways and boards, live.",
    )
    parser.add_argument(
        "--fleet-dir",
        type=Path,
        default=None,
        help=f"the fleet directory (default: ${FLEET_DIR_ENV}, else $XDG_DATA_HOME/simpul/fleet)",
    )
    parser.add_argument(
        "--refresh",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often the fleet is read (default: %(default)s)",
    )
    parser.add_argument(
        "--broker",
        default=os.environ.get(BROKER_ENV),
        metavar="HOST:PORT",
        help=f"the MQTT broker that carries commands to gateways, for a board's reboot and"
        f" log (default: ${BROKER_ENV}; without one, those are refused)",
    )
    parser.set_defaults(handler=run)
