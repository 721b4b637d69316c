"""``simpul gateway release …`` and ``simpul gateway desired …``: signed releases on the
gateway, and which one each board should run.

``simpul gateway release add FILE`` verifies a release file against the root public key of
``[gateway.ota]`` and caches it, printing one line::

    cached release <seq> <version> <hw> (<bytes> bytes)

``simpul gateway desired set (--board ID | --kind K) --release SEQ`` names a cached release
for one board or a kind of board (a board's own setting wins over its kind's); its next 2.04
tells the board (``gateway.ota.hints``). A refusal exits with code 2 and one line on stderr
naming why; nothing is written.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from gateway.codec.senml import is_board_id
from gateway.config import load_config
from gateway.errors import BadQuery, GatewayError, StateDirError, UnknownRelease
from gateway.store.releases import ReleaseTable
from gateway.store.schema import prepare

EXIT_OK = 0
EXIT_USAGE = 2
_KIND_RE: Final = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_SEQ_RE: Final = re.compile(r"^[1-9][0-9]{0,18}$")


def add_commands(commands: Any) -> None:
    """Add ``release`` to the ``simpul gateway`` group's subcommands."""
    release = commands.add_parser(
        "release",
        help="the cache of signed releases the gateway serves its boards",
        description="Add verified releases to the gateway's cache, or list them.",
    )
    actions = release.add_subparsers(dest="release_command", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add",
        help="verify a release file against the root key and cache it",
        description="Verify FILE as a board would (root key of [gateway.ota], certificate,"
        " revocations, signature, files, hardware class) and only then cache it.",
    )
    add.add_argument("file", type=Path, metavar="FILE", help="a release file")
    _common(add)
    add.set_defaults(handler=add_command)
    show = actions.add_parser("list", help="the cached releases")
    _common(show)
    show.set_defaults(handler=list_command)
    desired = commands.add_parser(
        "desired",
        help="the release each board, or each kind of board, should run",
        description="Set or show desired releases; a board whose health says it runs another"
        " release is told in its next 2.04 that an update is due.",
    )
    desired_actions = desired.add_subparsers(
        dest="desired_command", metavar="ACTION", required=True
    )
    set_ = desired_actions.add_parser("set", help="set the desired release of a board or kind")
    target = set_.add_mutually_exclusive_group(required=True)
    target.add_argument("--board", metavar="ID", help="one board, by its id")
    target.add_argument("--kind", metavar="K", help="every board of a kind (air, water, bin...)")
    set_.add_argument("--release", metavar="SEQ", required=True, help="a cached release's seq")
    _common(set_)
    set_.set_defaults(handler=desired_set_command)
    show_desired = desired_actions.add_parser("show", help="every desired release")
    _common(show_desired)
    show_desired.set_defaults(handler=desired_show_command)
    status = desired_actions.add_parser(
        "status",
        help="each board's release and OTA step, as its last health report said them",
        description="One line per board, tab-separated: its id, the release it runs (0: its "
        "factory application), its step (downloading, verified, installed, trial, confirmed, "
        "rolled_back, rejected, idle), the board's detail (progress or reason) and when it "
        "said so (UTC).",
    )
    _common(status)
    status.set_defaults(handler=desired_status_command)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML file with a [gateway] table")
    parser.add_argument("--state-dir", type=Path, help="the gateway's state directory")


def add_command(args: argparse.Namespace) -> int:
    """Handler of ``simpul gateway release add``."""
    from gateway.ota.cache import ReleaseCache, load_root_key, read_release_file

    try:
        config = load_config(args.config, overrides={"state_dir": args.state_dir})
        root = load_root_key(config)
        if root is None:
            raise GatewayError(
                "no root public key configured: set [gateway.ota] root_public_key"
                " (or SIMPUL_GATEWAY__OTA__ROOT_PUBLIC_KEY)"
            )
        data = read_release_file(args.file)
        _prepare(config.state_dir, config.db_path)
        cache = ReleaseCache(config, root)
        try:
            added = cache.add(data)
        finally:
            cache.close()
    except GatewayError as exc:
        print(f"simpul gateway release: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    release = added.release
    word = "cached" if added.new else "already cached"
    print(f"{word} release {release.seq} {release.version} {release.hw} ({release.total} bytes)")
    for seq in added.evicted:
        print(f"evicted release {seq}: its release key is revoked")
    return EXIT_OK


def list_command(args: argparse.Namespace) -> int:
    """Handler of ``simpul gateway release list``."""
    return _print_rows(
        args,
        "release",
        lambda table: [f"{r.seq}\t{r.version}\t{r.hw}\t{r.total}" for r in table.releases()],
    )


def _print_rows(
    args: argparse.Namespace, command: str, rows: Callable[[ReleaseTable], list[str]]
) -> int:
    """What a read command prints, one line per row, from an existing gateway's tables."""
    try:
        with _existing_table(args) as table:
            lines = rows(table)
    except GatewayError as exc:
        print(f"simpul gateway {command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for line in lines:
        print(line)
    return EXIT_OK


@contextlib.contextmanager
def _existing_table(args: argparse.Namespace) -> Iterator[ReleaseTable]:
    """The release tables of the gateway that ``--config``/``--state-dir`` name, which must
    exist already (see :func:`_existing`)."""
    config = load_config(args.config, overrides={"state_dir": args.state_dir})
    _existing(config.state_dir, config.db_path)
    table = ReleaseTable(config.db_path)
    try:
        yield table
    finally:
        table.close()


def _existing(state_dir: Path, db_path: Path) -> None:
    """The gateway's database, migrated as the daemon would; it must exist already.

    Commands that read or name what a gateway holds never create a state directory: a
    mistyped ``--state-dir`` must say so, not answer from an empty new database.
    """
    if not db_path.exists():
        raise StateDirError(f"no gateway state in {state_dir}: is the state directory right?")
    prepare(db_path)


def _prepare(state_dir: Path, db_path: Path) -> None:
    """The state directory and database, made or migrated as the daemon would."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateDirError(f"cannot create state dir {state_dir}: {exc.strerror}") from None
    prepare(db_path)


def desired_set_command(args: argparse.Namespace) -> int:
    """Handler of ``simpul gateway desired set``."""
    try:
        scope, target = ("board", args.board) if args.board is not None else ("kind", args.kind)
        check_target(scope, target)
        seq = parse_seq(args.release)
        with _existing_table(args) as table:
            if table.release(seq) is None:
                raise UnknownRelease(f"release {seq} is not cached: add it first (release add)")
            table.set_desired(scope, target, seq)
    except GatewayError as exc:
        print(f"simpul gateway desired: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"desired release of {scope} {target}: {seq}")
    return EXIT_OK


def desired_show_command(args: argparse.Namespace) -> int:
    """Handler of ``simpul gateway desired show``: one line per board or kind."""
    return _print_rows(
        args, "desired", lambda table: ["\t".join(map(str, row)) for row in table.desired()]
    )


def desired_status_command(args: argparse.Namespace) -> int:
    """Handler of ``simpul gateway desired status``: board, running seq, state, detail, when
    (UTC)."""

    def lines(table: ReleaseTable) -> list[str]:
        out = []
        for board_id, running, state, detail, updated_ms in table.board_ota():
            when = datetime.fromtimestamp(updated_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            out.append(f"{board_id}\t{running}\t{state}\t{detail or '-'}\t{when}")
        return out

    return _print_rows(args, "desired", lines)


def check_target(scope: str, target: str) -> None:
    """A board id as boards send it, or a kind's name; :class:`BadQuery` otherwise."""
    if scope == "board" and not is_board_id(target):
        raise BadQuery(f"{target!r:.60} is not a board id")
    if scope == "kind" and not _KIND_RE.match(target):
        raise BadQuery(f"{target!r:.60} is not a kind of board (a-z, 0-9, -)")


def parse_seq(text: str) -> int:
    if not _SEQ_RE.match(text):
        raise BadQuery(f"release {text!r:.30} is not a release seq (a positive number)")
    return int(text)
