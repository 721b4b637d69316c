"""The ``simpul`` command: one entry point, grouped by who uses it.

Each group lives beside the code it drives and adds its own subcommands here:
``simpul board …`` (technicians), ``simpul gateway …`` (the Pi daemon), ``simpul verify``
(consumers of its batches), ``simpul fleet keys …``,
``simpul fleet init|status|sites|gateways|boards|alerts|audit`` (the inventory),
``simpul fleet`` alone (the console, ``--serve`` for browsers) and ``simpul release …``
(operators), ``simpul emulate …`` and ``simpul demo`` (one machine).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    # Imported here, not at the top: the gateway's worker processes are spawned, and each
    # imports this module again as its main (``__mp_main__``) without calling this; they
    # need none of the groups, and importing all of them cost each one most of its start.
    from fleet import commands as fleet_commands_cli
    from fleet import inventory as fleet_inventory
    from fleet import keys as fleet_keys
    from fleet import release as fleet_release
    from fleet import rollout_cli, serve
    from fleet.board import cli as board_cli
    from fleet.console import cli as console_cli
    from gateway import cli as gateway_cli
    from gateway.batches import cli as verify_cli
    from hw import cli as hw_cli

    parser = argparse.ArgumentParser(
        prog="simpul",
        description="simpul runs a city's sensor network: boards, gateways and the fleet.",
    )
    parser.add_argument("--version", action="version", version=f"simpul {simpul_version()}")
    groups = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    gateway_cli.add_commands(groups)
    verify_cli.add_commands(groups)
    hw_cli.add_commands(groups)
    board_cli.add_commands(groups)
    fleet = groups.add_parser(
        "fleet",
        help="the operator's fleet: the console (no command), signing keys, the inventory"
        " (sites, gateways, boards), alerts, the audit log, and the fleet manager service"
        " (serve)",
        description="The operator's fleet manager. With no command: the console.",
    )
    console_cli.add_console_options(fleet)
    fleet_commands = fleet.add_subparsers(dest="fleet_command", metavar="COMMAND")
    fleet_keys.add_commands(fleet_commands)
    fleet_inventory.add_commands(fleet_commands)
    serve.add_commands(fleet_commands)
    fleet_commands_cli.add_commands(fleet_commands)
    console_cli.add_commands(fleet_commands)
    fleet_release.add_commands(groups)
    rollout_cli.add_commands(groups)
    return parser


def simpul_version() -> str:
    """The installed distribution's version (``0+unknown`` when run from a bare checkout)."""
    try:
        return version("simpul")
    except PackageNotFoundError:
        return "0+unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
