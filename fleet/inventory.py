"""``simpul fleet init|status|sites|gateways|boards|alerts|audit``: the fleet's inventory,
scriptable (``boards import`` takes the signed enrolment file of ``simpul board flash --offline``).

Every command reads or changes fleet.db (``<fleet dir>/fleet.db``, :mod:`fleet.store`) and
takes ``--fleet-dir`` (as ``simpul fleet keys`` does) and ``--json`` (one JSON document on
stdout, stable keys; else aligned tables for people). Errors are one line on stderr: exit 2
for a usage error, 1 when the command failed (an unknown site, a board already enrolled).

A command that changes something appends an entry to the audit log (:mod:`fleet.audit`) in
the same transaction as the change, or, when the change fails, an entry whose result is the
error. The operator named is ``--operator``, else ``$SIMPUL_OPERATOR``, else the login name.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TypeAlias, TypeVar

from fleet import audit, keyfiles
from fleet.errors import Conflict, FleetError
from fleet.keys import FLEET_DIR_ENV, default_fleet_dir
from fleet.levels import flood_thresholds
from fleet.records import Alert, Board, Gateway, Site
from fleet.store import DB_NAME, FleetStore
from gateway.codec import cose

OPERATOR_ENV: Final = "SIMPUL_OPERATOR"

T = TypeVar("T")
Parser = argparse.ArgumentParser
Actions: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CommandFailed(Exception):
    """A command could not do what it was asked; the message is its one line on stderr."""


def operator_name(explicit: str | None) -> str:
    """``--operator``, else ``$SIMPUL_OPERATOR``, else the login name."""
    if explicit:
        return explicit
    from_env = os.environ.get(OPERATOR_ENV)
    if from_env:
        return from_env
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


# --- output --------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in (headers, *rows)
    ]
    return "\n".join(lines)


def when(ms: int | None) -> str:
    """Unix milliseconds as UTC minutes, ``-`` for none."""
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ms / 1000))


def _emit(args: argparse.Namespace, document: dict[str, Any], text: str) -> None:
    if args.json:
        print(json.dumps(document, indent=2, sort_keys=True))
    elif text:
        print(text)


def _sites_text(sites: Sequence[Site]) -> str:
    rows = [
        (
            s.site_id,
            s.name,
            when(s.created_ms),
            ", ".join(f"{k}={v:g}m" for k, v in sorted((s.flood_levels or {}).items())) or "-",
        )
        for s in sites
    ]
    return table(("SITE", "NAME", "CREATED", "FLOOD LEVELS"), rows)


def _gateways_text(gateways: Sequence[Gateway]) -> str:
    rows = [
        (
            g.gateway_id,
            g.site_id,
            cose.key_id(g.public_key).hex(),
            when(g.added_ms),
            when(g.last_state_ms),
            "-" if g.state_seq is None else str(g.state_seq),
            "retired" if g.retired_ms is not None else "active",
        )
        for g in gateways
    ]
    headers = ("GATEWAY", "SITE", "KEY ID", "ADDED", "LAST STATE", "SEQ", "STATUS")
    return table(headers, rows)


def _boards_text(boards: Sequence[Board]) -> str:
    rows = [
        (
            b.board_id,
            b.kind,
            b.site_id,
            b.gateway_id,
            str(b.running),
            b.ota_state or "-",
            when(b.last_seen_ms),
            ",".join(b.tags) or "-",
            "retired" if b.retired_ms is not None else "active",
        )
        for b in boards
    ]
    headers = ("BOARD", "KIND", "SITE", "GATEWAY", "RUNS", "OTA", "LAST SEEN", "TAGS", "STATUS")
    return table(headers, rows)


def _alerts_text(alerts: Sequence[Alert]) -> str:
    rows = [
        (
            str(a.id),
            a.state,
            a.rule,
            f"{a.subject_kind} {a.subject}",
            when(a.raised_ms),
            when(a.cleared_ms),
            "-" if a.acked_by is None else f"{a.acked_by}: {a.note or ''}".strip(),
        )
        for a in alerts
    ]
    headers = ("ID", "STATE", "RULE", "SUBJECT", "RAISED", "CLEARED", "ACKNOWLEDGED")
    return table(headers, rows)


# --- running a command ---------------------------------------------------------------------


def _db_path(args: argparse.Namespace) -> Path:
    fleet_dir: Path = args.fleet_dir or default_fleet_dir()
    return fleet_dir / DB_NAME


def _open(args: argparse.Namespace) -> FleetStore:
    return FleetStore(_db_path(args), create=False)


def audited_change(
    store: FleetStore,
    operator: str,
    action: str,
    target: str,
    detail: dict[str, Any],
    change: Callable[[FleetStore], T],
) -> T:
    """Run ``change`` and append its audit entry in one transaction; on failure, append an
    entry with the error and raise it again. What the commands and the console share."""
    try:
        with store.transaction():
            done = change(store)
            store.append_audit(operator, action, target, detail, "ok")
        return done
    except (FleetError, ValueError) as exc:
        with contextlib.suppress(FleetError):
            store.append_audit(operator, action, target, detail, f"error: {exc}")
        raise


def _change(
    args: argparse.Namespace,
    action: str,
    target: str,
    detail: dict[str, Any],
    change: Callable[[FleetStore], T],
) -> T:
    """:func:`audited_change` on the fleet ``args`` name, as ``args.operator``; a failure
    becomes :class:`CommandFailed`."""
    with _open(args) as store:
        try:
            return audited_change(
                store, operator_name(args.operator), action, target, detail, change
            )
        except (FleetError, ValueError) as exc:
            raise CommandFailed(str(exc)) from None


def acknowledge_alert(store: FleetStore, alert_id: int, note: str, *, operator: str) -> Alert:
    """``operator`` has seen alert ``alert_id`` and says what is being done (``note``, which
    may not be empty); audited as ``alert.ack``. The alert stays open until its rule clears
    it."""

    def change(store: FleetStore) -> Alert:
        if not note.strip():
            raise ValueError("an acknowledgement needs a note: say what is being done about it")
        return store.acknowledge_alert(alert_id, operator, note.strip())

    return audited_change(store, operator, "alert.ack", str(alert_id), {"note": note}, change)


def _runs(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (CommandFailed, FleetError, ValueError) as exc:
            print(f"simpul fleet {args.fleet_command}: error: {exc}", file=sys.stderr)
            return 1

    return run


# --- the commands --------------------------------------------------------------------------


def _init(args: argparse.Namespace) -> int:
    path = _db_path(args)
    try:
        path.parent.mkdir(mode=keyfiles.DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandFailed(f"cannot create {path.parent}: {exc.strerror}") from None
    with FleetStore(path) as store:
        if store.created:
            store.append_audit(operator_name(args.operator), "init", str(path), {}, "ok")
        version = store.schema_version()
    said = "created" if store.created else "is ready"
    _emit(
        args,
        {"path": str(path), "created": store.created, "schema_version": version},
        f"fleet database {path} {said} (schema version {version})",
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    with _open(args) as store:
        status = store.status()
    counts = status.as_json()
    width = max(len(name) for name in counts)
    text = "\n".join(f"{name.replace('_', ' '):{width}}  {n}" for name, n in counts.items())
    _emit(args, {"path": str(_db_path(args)), **counts}, f"fleet database {_db_path(args)}\n{text}")
    return 0


def _sites(args: argparse.Namespace) -> int:
    with _open(args) as store:
        sites = store.sites()
    _emit(args, {"sites": [s.as_json() for s in sites]}, _sites_text(sites))
    return 0


def _flood_levels(specs: Sequence[str] | None) -> dict[str, float] | None:
    if not specs:
        return None
    levels: dict[str, float] = {}
    for spec in specs:
        name, _, metres = spec.partition("=")
        try:
            levels[name.strip()] = float(metres)
        except ValueError:
            raise CommandFailed(f"--flood {spec!r}: write LEVEL=METRES, e.g. siaga3=1.5") from None
    try:
        return flood_thresholds(levels)
    except ValueError as exc:
        raise ValueError(f"--flood: {exc}") from None


def _sites_add(args: argparse.Namespace) -> int:
    detail: dict[str, Any] = {"name": args.name, "flood": args.flood}
    site = _change(
        args,
        "site.add",
        args.site,
        detail,
        lambda store: store.add_site(args.site, args.name, flood_levels=_flood_levels(args.flood)),
    )
    _emit(args, {"site": site.as_json()}, f"site {site.site_id} added")
    return 0


def _gateways(args: argparse.Namespace) -> int:
    with _open(args) as store:
        gateways = store.gateways(site_id=args.site)
    _emit(args, {"gateways": [g.as_json() for g in gateways]}, _gateways_text(gateways))
    return 0


def _gateways_add(args: argparse.Namespace) -> int:
    detail = {"site": args.site, "key_file": str(args.key)}

    def change(store: FleetStore) -> Gateway:
        key = keyfiles.load_public_key(args.key)
        detail["kid"] = cose.key_id(key).hex()
        return store.add_gateway(args.gateway, args.site, key)

    gateway = _change(args, "gateway.add", args.gateway, detail, change)
    kid = cose.key_id(gateway.public_key).hex()
    _emit(
        args,
        {"gateway": gateway.as_json()},
        f"gateway {gateway.gateway_id} added at site {gateway.site_id}, key {kid}",
    )
    return 0


def _releases(args: argparse.Namespace) -> int:
    with _open(args) as store:
        releases = store.releases()
    rows = [[str(r.seq), r.version, r.hw, str(r.size), when(r.added_ms)] for r in releases]
    _emit(
        args,
        {"releases": [{"seq": r.seq, "version": r.version, "hw": r.hw, "bytes": r.size,
                       "added_ms": r.added_ms} for r in releases]},
        table(["SEQ", "VERSION", "HW", "BYTES", "ADDED"], rows),
    )  # fmt: skip
    return 0


def _releases_add(args: argparse.Namespace) -> int:
    from fleet import operations  # the rollout actions import this module's helpers

    fleet_dir: Path = args.fleet_dir or default_fleet_dir()
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise CommandFailed(f"cannot read {args.file}: {exc.strerror}") from None
    with _open(args) as store:
        seq = operations.add_release(store, fleet_dir, data, operator=operator_name(args.operator))
    _emit(args, {"release": seq}, f"release {seq} verified and held for rollouts")
    return 0


def _boards(args: argparse.Namespace) -> int:
    with _open(args) as store:
        boards = store.boards(
            site_id=args.site,
            kind=args.kind,
            tag=args.tag,
            gateway_id=args.gateway,
            include_retired=args.all,
        )
    _emit(args, {"boards": [b.as_json() for b in boards]}, _boards_text(boards))
    return 0


def _boards_add(args: argparse.Namespace) -> int:
    tags = sorted(set(args.tag or ()))
    detail = {"kind": args.kind, "site": args.site, "gateway": args.gateway, "tags": tags}
    board = _change(
        args,
        "board.add",
        args.board,
        detail,
        lambda store: store.enroll_board(
            args.board, kind=args.kind, site_id=args.site, gateway_id=args.gateway, tags=tags
        ),
    )
    _emit(
        args,
        {"board": board.as_json()},
        f"board {board.board_id} ({board.kind}) enrolled on gateway {board.gateway_id}"
        f" at site {board.site_id}",
    )
    return 0


def _boards_tag(args: argparse.Namespace) -> int:
    tags = sorted(set(args.tags))
    if args.remove:
        board = _change(
            args, "board.untag", args.board, {"tags": tags},
            lambda store: store.untag_board(args.board, tags),
        )  # fmt: skip
    else:
        board = _change(
            args, "board.tag", args.board, {"tags": tags},
            lambda store: store.tag_board(args.board, tags),
        )  # fmt: skip
    _emit(
        args,
        {"board": board.as_json()},
        f"board {board.board_id} tags: {', '.join(board.tags) or 'none'}",
    )
    return 0


def _boards_retire(args: argparse.Namespace) -> int:
    board = _change(
        args, "board.retire", args.board, {}, lambda store: store.retire_board(args.board)
    )
    _emit(args, {"board": board.as_json()}, f"board {board.board_id} retired")
    return 0


def _boards_rekey(args: argparse.Namespace) -> int:
    from gateway.oscore.keys import generate

    def rekey(store: FleetStore) -> int:
        found = store.board_key(args.board)
        if found is None:
            raise Conflict(f"board {args.board} has no OSCORE key in fleet.db: flash it")
        material = generate(args.board, found[0].sid).material
        detail["oscore_key"] = material.fingerprint
        return store.set_board_key(args.board, material)

    detail: dict[str, Any] = {}
    generation = _change(args, "board.rekey", args.board, detail, rekey)
    _emit(
        args,
        {"board": args.board, "generation": generation, "oscore_key": detail["oscore_key"]},
        f"board {args.board}: new OSCORE key {detail['oscore_key']} (generation {generation});"
        " its gateway gets it sealed in its next desired document, the board at its next"
        " contact",
    )
    return 0


def _boards_import(args: argparse.Namespace) -> int:
    from fleet.board.enrol import import_enrolment
    from fleet.board.errors import EnrolmentRefused

    fleet_dir: Path = args.fleet_dir or default_fleet_dir()
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise CommandFailed(f"cannot read {args.file}: {exc.strerror}") from None
    try:
        board = import_enrolment(fleet_dir, data, operator=operator_name(args.operator))
    except EnrolmentRefused as exc:
        raise CommandFailed(f"{args.file} refused: {exc}") from None
    _emit(
        args,
        {"board": board.as_json()},
        f"board {board.board_id} ({board.kind}) enrolled on gateway {board.gateway_id}"
        f" at site {board.site_id}, from {args.file}",
    )
    return 0


def _alerts(args: argparse.Namespace) -> int:
    with _open(args) as store:
        alerts = store.recent_alerts(limit=args.limit) if args.all else store.open_alerts()
    _emit(args, {"alerts": [a.as_json() for a in alerts]}, _alerts_text(alerts))
    return 0


def _alerts_ack(args: argparse.Namespace) -> int:
    operator = operator_name(args.operator)
    with _open(args) as store:
        try:
            alert = acknowledge_alert(store, args.id, args.note, operator=operator)
        except (FleetError, ValueError) as exc:
            raise CommandFailed(str(exc)) from None
    _emit(args, {"alert": alert.as_json()}, f"alert {alert.id} acknowledged by {operator}")
    return 0


def _audit(args: argparse.Namespace) -> int:
    with _open(args) as store:
        entries, head = store.audit_log()
    if args.verify:
        problems = audit.verify(entries, head)
        count = 0 if head is None else head.count
        _emit(
            args,
            {
                "intact": not problems,
                "entries": len(entries),
                "head": None if head is None else {"count": count, "digest": head.digest.hex()},
                "problems": [p.as_json() for p in problems],
            },
            "\n".join(p.message for p in problems)
            if problems
            else f"audit log intact: {len(entries)} entries"
            + ("" if head is None else f", head {head.digest.hex()[:16]}"),
        )
        return 1 if problems else 0
    shown = entries[-args.limit :] if args.limit else entries
    rows = [
        (
            str(e.seq),
            when(e.at_ms),
            e.operator,
            e.action,
            e.target,
            e.result,
        )
        for e in shown
    ]
    _emit(
        args,
        {"entries": [e.as_json() for e in shown]},
        table(("SEQ", "AT", "OPERATOR", "ACTION", "TARGET", "RESULT"), rows),
    )
    return 0


# --- the parsers ---------------------------------------------------------------------------


def _common(parser: Parser, *, child: bool, changes: bool) -> None:
    """``--fleet-dir`` and ``--json`` (and ``--operator`` for changes), accepted before or
    after an action's name (an action's own default does not hide its group's)."""
    default: Any = argparse.SUPPRESS if child else None
    parser.add_argument(
        "--fleet-dir",
        type=Path,
        default=default,
        help=f"the fleet directory (default: ${FLEET_DIR_ENV}, else $XDG_DATA_HOME/simpul/fleet)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if child else False,
        help="print one JSON document (stable keys) instead of a table",
    )
    if changes:
        parser.add_argument(
            "--operator",
            default=default,
            help=f"who does this, for the audit log (default: ${OPERATOR_ENV}, else the login"
            " name)",
        )
    else:
        parser.set_defaults(operator=None)


def _command(
    actions: Actions,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    description: str,
    *,
    child: bool = False,
    changes: bool = False,
) -> Parser:
    parser = actions.add_parser(name, help=description.split(":")[0], description=description)
    _common(parser, child=child, changes=changes)
    parser.set_defaults(handler=_runs(handler))
    return parser


def add_commands(fleet_commands: Actions) -> None:
    """``simpul fleet init|status|sites|gateways|boards|alerts|audit``."""
    _command(
        fleet_commands,
        "init",
        _init,
        "create fleet.db in the fleet directory (safe to repeat: an existing file is migrated"
        " to this release's schema, never emptied)",
        changes=True,
    )
    _command(
        fleet_commands,
        "status",
        _status,
        "counts of what fleet.db holds: sites, gateways, boards, releases, rollouts, open"
        " alerts, audit entries",
    )

    sites = _command(fleet_commands, "sites", _sites, "list the sites: id, name, flood levels")
    site_actions = sites.add_subparsers(dest="sites_command", metavar="ACTION")
    add = _command(site_actions, "add", _sites_add, "add a site", child=True, changes=True)
    add.add_argument("site", metavar="SITE", help="the site's id, as gateways' topics name it")
    add.add_argument("--name", required=True, help="the site's name, for people")
    add.add_argument(
        "--flood",
        action="append",
        metavar="LEVEL=METRES",
        help="a flood alert level for the site's water boards, siaga4 (lowest) to siaga1,"
        " in metres (repeat for each level)",
    )

    gateways = _command(
        fleet_commands,
        "gateways",
        _gateways,
        "list the gateways: site, key id, the last state they sent",
    )
    gateways.add_argument("--site", help="only this site's gateways")
    gateway_actions = gateways.add_subparsers(dest="gateways_command", metavar="ACTION")
    add = _command(
        gateway_actions,
        "add",
        _gateways_add,
        "add a gateway at a site, with the public key its state and batches are signed with",
        child=True,
        changes=True,
    )
    add.add_argument("gateway", metavar="GW", help="the gateway's id")
    add.add_argument("--site", required=True, help="the site it serves (added before)")
    add.add_argument(
        "--key",
        type=Path,
        required=True,
        metavar="PUBFILE",
        help="its public key: the PEM file 'simpul gateway key --public' prints",
    )

    releases = _command(
        fleet_commands,
        "releases",
        _releases,
        "list the releases the fleet holds for rollouts: seq, version, hardware, size",
    )
    release_actions = releases.add_subparsers(dest="releases_command", metavar="ACTION")
    add = _command(
        release_actions,
        "add",
        _releases_add,
        "verify a release file against the fleet's root key and hold it for rollouts",
        child=True,
        changes=True,
    )
    add.add_argument("file", type=Path, metavar="FILE", help="a file 'simpul release build' wrote")

    boards = _command(
        fleet_commands,
        "boards",
        _boards,
        "list enrolled boards: kind, site, gateway, the release each runs, OTA state, tags",
    )
    boards.add_argument("--site", help="only boards at this site")
    boards.add_argument("--kind", help="only boards of this kind")
    boards.add_argument("--tag", help="only boards with this tag")
    boards.add_argument("--gateway", help="only boards on this gateway")
    boards.add_argument("--all", action="store_true", help="retired boards too")
    board_actions = boards.add_subparsers(dest="boards_command", metavar="ACTION")
    add = _command(
        board_actions,
        "add",
        _boards_add,
        "enroll a board on a gateway of its site",
        child=True,
        changes=True,
    )
    add.add_argument("board", metavar="BOARD", help="the board's id")
    add.add_argument("--kind", required=True, help="what kind of board it is (air, water, ...)")
    add.add_argument("--site", required=True, help="the site it is at")
    add.add_argument("--gateway", required=True, help="the gateway it talks to, at that site")
    add.add_argument(
        "--tag", action="append", metavar="TAG", help="a tag, to pick boards by (repeatable)"
    )
    tag = _command(
        board_actions,
        "tag",
        _boards_tag,
        "add tags to a board (or remove them with --remove)",
        child=True,
        changes=True,
    )
    tag.add_argument("board", metavar="BOARD", help="the board's id")
    tag.add_argument("tags", nargs="+", metavar="TAG", help="the tags")
    tag.add_argument("--remove", action="store_true", help="remove these tags instead")
    retire = _command(
        board_actions,
        "retire",
        _boards_retire,
        "retire a board: it leaves listings and desired documents, its record stays",
        child=True,
        changes=True,
    )
    retire.add_argument("board", metavar="BOARD", help="the board's id")
    rekey = _command(
        board_actions,
        "rekey",
        _boards_rekey,
        "give a board a new OSCORE Master Secret: the fleet seals it to the board's gateway,"
        " which hands it to the board at its next contact (the old key is accepted until then)",
        child=True,
        changes=True,
    )
    rekey.add_argument("board", metavar="BOARD", help="the board's id")
    imported = _command(
        board_actions,
        "import",
        _boards_import,
        "enrol a board from the signed file 'simpul board flash --offline' wrote: it is"
        " verified against the fleet's root key first, and a file that does not verify"
        " changes nothing",
        child=True,
        changes=True,
    )
    imported.add_argument("file", type=Path, metavar="FILE", help="the enrolment file")

    alerts = _command(
        fleet_commands,
        "alerts",
        _alerts,
        "list open alerts (with --all, cleared ones too, newest first)",
    )
    alerts.add_argument("--all", action="store_true", help="cleared alerts too")
    alerts.add_argument(
        "--limit", type=int, default=200, help="at most this many with --all (%(default)s)"
    )
    alert_actions = alerts.add_subparsers(dest="alerts_command", metavar="ACTION")
    ack = _command(
        alert_actions,
        "ack",
        _alerts_ack,
        "acknowledge an alert with a note: it stays open until its rule clears it",
        child=True,
        changes=True,
    )
    ack.add_argument("id", type=int, metavar="ID", help="the alert's id")
    ack.add_argument("--note", required=True, help="what is being done about it")

    audit_ = _command(
        fleet_commands,
        "audit",
        _audit,
        "list the operators' audit log; with --verify, check its hash chain and name any"
        " entry edited, deleted or inserted (exit 1)",
    )
    audit_.add_argument(
        "--verify", action="store_true", help="check the chain and its head instead of listing"
    )
    audit_.add_argument("--limit", type=int, default=0, help="list only the newest N entries")
