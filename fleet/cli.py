"""The ``simpul`` command: one entry point, grouped by who uses it.

Each group lives beside the code it drives and adds its own subcommands here:
``simpul gateway …`` (the Pi daemon), ``simpul verify`` (consumers of its batches),
``simpul emulate …`` and ``simpul demo`` (one machine).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from gateway import cli as gateway_cli
from gateway import verify_cli
from hw import cli as hw_cli

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simpul",
        description="simpul runs a city's sensor network: boards, gateways and the fleet.",
    )
    groups = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    gateway_cli.add_commands(groups)
    verify_cli.add_commands(groups)
    hw_cli.add_commands(groups)
    return parser


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
