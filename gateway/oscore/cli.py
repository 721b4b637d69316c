"""``simpul gateway boards …``: the boards this gateway holds OSCORE keys for.

``import FILE`` enrols (or re-keys) the boards of a keys file (``gateway.oscore.keys``): what
a technician carries to a gateway that the fleet's control channel does not reach. A running
daemon picks the change up within ``security.reload_interval_ms``; a re-keyed board keeps
talking under its old key until its first request under the new one. ``list`` shows each
board's Sender ID, where its key came from and the key's fingerprint, never the key.
``remove BOARD…`` unenrols boards. Exit code 2 with a one-line message for a file that is
not a keys file, a Sender ID another board holds, or a gateway with no state yet.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError
from gateway.oscore.keys import decode_keys_file
from gateway.store.board_keys import BoardKeyTable
from gateway.store.schema import prepare

EXIT_OK = 0
EXIT_USAGE = 2
#: A keys file for thousands of boards is well under this.
MAX_KEYS_FILE_BYTES = 4 << 20


def add_commands(commands: Any) -> None:
    """Add ``boards`` to the ``simpul gateway`` subcommands."""
    boards = commands.add_parser(
        "boards",
        help="the boards this gateway holds OSCORE keys for: import, list, remove",
        description="Enrol boards from a keys file, list them, or remove them.",
    )
    actions = boards.add_subparsers(dest="boards_command", metavar="ACTION", required=True)
    for name, help_text in (
        ("import", "enrol or re-key the boards of a keys file"),
        ("list", "each board's Sender ID, key source and fingerprint"),
        ("remove", "unenrol boards"),
    ):
        action = actions.add_parser(name, help=help_text, description=help_text[0].upper()
                                    + help_text[1:] + ".")  # fmt: skip
        action.add_argument("--config", type=Path, help="TOML file with a [gateway] table")
        action.add_argument("--state-dir", type=Path, help="the gateway's state directory")
        if name == "import":
            action.add_argument("file", type=Path, metavar="FILE", help="a keys file (JSON)")
        elif name == "remove":
            action.add_argument("board_ids", nargs="+", metavar="BOARD")
        else:
            action.add_argument("--json", action="store_true", help="one JSON object per board")
        action.set_defaults(handler=boards_command)


def boards_command(args: argparse.Namespace) -> int:
    from gateway.config import load_config

    try:
        config = load_config(args.config, overrides={"state_dir": args.state_dir})
        if not config.db_path.exists():
            raise GatewayError(f"no gateway state at {config.state_dir}: run 'simpul gateway run'")
        prepare(config.db_path)  # an older gateway.db gets its board_keys table
        table = BoardKeyTable(config.db_path)
        try:
            return _run(args, table)
        finally:
            table.close()
    except (GatewayError, OSError) as exc:
        print(f"simpul gateway boards: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _run(args: argparse.Namespace, table: BoardKeyTable) -> int:
    if args.boards_command == "import":
        with args.file.open("rb") as f:
            data = f.read(MAX_KEYS_FILE_BYTES + 1)
        if len(data) > MAX_KEYS_FILE_BYTES:
            raise GatewayError(f"{args.file}: larger than a keys file can be")
        keys = decode_keys_file(data)
        changed = table.put(keys, source="file")
        print(f"{len(keys)} boards in {args.file}: {len(changed)} enrolled or re-keyed")
        return EXIT_OK
    if args.boards_command == "remove":
        removed = table.remove(args.board_ids)
        print(f"{removed} of {len(args.board_ids)} boards removed")
        return EXIT_OK
    for stored in table.all():
        row = {
            "board": stored.board_id,
            "sid": stored.material.sid.hex(),
            "source": stored.source,
            "fingerprint": stored.material.fingerprint,
            "rotating": stored.previous is not None,
        }
        if args.json:
            print(json.dumps(row))
        else:
            rotating = "  (previous key kept)" if row["rotating"] else ""
            print(f"{row['board']}  sid {row['sid']}  {row['source']}  {row['fingerprint']}"
                  f"{rotating}")  # fmt: skip
    return EXIT_OK
