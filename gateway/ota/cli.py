"""``simpul gateway release …``: the gateway's cache of signed releases.

``simpul gateway release add FILE`` verifies a release file against the root public key of
``[gateway.ota]`` and caches it, printing one line::

    cached release <seq> <version> <hw> (<n> files, <bytes> bytes)

A refused release exits with code 2 and one line on stderr naming why; nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gateway.config import load_config
from gateway.errors import GatewayError, StateDirError
from gateway.store.schema import prepare

EXIT_OK = 0
EXIT_USAGE = 2


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
    return EXIT_OK


def list_command(args: argparse.Namespace) -> int:
    """Handler of ``simpul gateway release list``."""
    from gateway.store.releases import ReleaseTable

    try:
        config = load_config(args.config, overrides={"state_dir": args.state_dir})
        _prepare(config.state_dir, config.db_path)
        table = ReleaseTable(config.db_path)
        try:
            releases = table.releases()
        finally:
            table.close()
    except GatewayError as exc:
        print(f"simpul gateway release: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for release in releases:
        print(f"{release.seq}\t{release.version}\t{release.hw}\t{release.total}")
    return EXIT_OK


def _prepare(state_dir: Path, db_path: Path) -> None:
    """The state directory and database, made or migrated as the daemon would."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateDirError(f"cannot create state dir {state_dir}: {exc.strerror}") from None
    prepare(db_path)
