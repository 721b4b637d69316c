"""``simpul rollout start|pause|resume|abort|status``: rollouts from the command line.

Each action changes fleet.db (``fleet.operations``) and is audited; ``simpul fleet serve``
publishes the gateways' new documents on its next cycle. ``--json`` prints one JSON
document. Errors are one line on stderr: exit 2 for usage, 1 when the action was refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleet import operations
from fleet.errors import FleetError
from fleet.inventory import operator_name, table, when
from fleet.keys import FLEET_DIR_ENV, default_fleet_dir
from fleet.records import Rollout
from fleet.rollouts import Target, WaveSpec, limits_from, parse_window
from fleet.store import DB_NAME, FleetStore

Handler = Callable[[argparse.Namespace, FleetStore, Path], int]


def add_commands(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rollout = groups.add_parser(
        "rollout",
        help="move boards to a release in waves: start, pause, resume, abort, status",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    actions = rollout.add_subparsers(dest="rollout_command", metavar="ACTION", required=True)
    start = actions.add_parser(
        "start",
        help="plan a rollout and start it",
        description="Plan a rollout of a release to the target boards (every board matching"
        " all of --site, --kind and --tag, plus every --board), in waves: a canary wave spread"
        " over the gateways, then waves up to each --waves percentage. Each wave soaks before"
        " the next starts; the rollout halts when more than --max-failures of a wave's boards"
        " fail (rejected, rolled back, not confirmed in time, silent or rebooting after it),"
        " and boards that took the release go back to the previous one.",
    )
    which = start.add_mutually_exclusive_group(required=True)
    which.add_argument("--release", type=int, metavar="SEQ", help="a release fleet.db holds")
    which.add_argument(
        "--release-file", type=Path, metavar="FILE", help="a release file, verified and added"
    )
    start.add_argument("--site", action="append", default=[], help="target boards of a site")
    start.add_argument("--kind", action="append", default=[], help="target boards of a kind")
    start.add_argument("--tag", action="append", default=[], help="target boards with a tag")
    start.add_argument("--board", action="append", default=[], help="target this board")
    start.add_argument("--id", help="the rollout's id (default: made from the release)")
    start.add_argument("--canary", type=int, default=1, help="canary boards (default: 1)")
    start.add_argument(
        "--waves",
        default="100",
        metavar="P,P,…",
        help="cumulative percentages of the other boards, one per wave (default: 100)",
    )
    start.add_argument(
        "--soak",
        default="600",
        metavar="S[,S,…]",
        help="seconds each wave soaks before the next starts: one figure for all, or one per"
        " wave, the canary's first (default: 600)",
    )
    start.add_argument(
        "--max-failures",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="share of a wave's boards that may fail before it halts (default: 0)",
    )
    start.add_argument(
        "--confirm-within",
        type=int,
        default=3600,
        metavar="SECONDS",
        help="time a board has to confirm the release (default: 3600)",
    )
    start.add_argument(
        "--silent-after",
        type=int,
        default=1800,
        metavar="SECONDS",
        help="a board silent this long after updating has failed (default: 1800)",
    )
    start.add_argument(
        "--max-reboots",
        type=int,
        default=3,
        help="reboots after updating that fail a board (default: 3; 0: not checked)",
    )
    start.add_argument("--window", metavar="HH:MM-HH:MM", help="UTC hours new waves may start")
    start.add_argument(
        "--revert-from",
        type=int,
        metavar="SEQ",
        help="the release a halt takes boards back to (default: what most of them run)",
    )
    start.set_defaults(handler=_wrap(_start))
    for verb, helptext in (
        ("pause", "start no new wave"),
        ("resume", "run a paused or halted rollout on"),
        ("abort", "take boards that took the release back to the previous one"),
    ):
        parser = actions.add_parser(verb, help=helptext, description=helptext.capitalize() + ".")
        parser.add_argument("rollout", help="the rollout's id")
        parser.set_defaults(handler=_wrap(_move), verb=verb)
    status = actions.add_parser(
        "status",
        help="rollouts and their waves",
        description="Every rollout, or one with its waves, its boards and why it halted.",
    )
    status.add_argument("rollout", nargs="?", help="one rollout's id")
    status.set_defaults(handler=_wrap(_status))
    for parser in (start, status, *(actions.choices[v] for v in ("pause", "resume", "abort"))):
        parser.add_argument(
            "--fleet-dir",
            type=Path,
            default=None,
            help=f"the fleet directory (default: ${FLEET_DIR_ENV}, else"
            " $XDG_DATA_HOME/simpul/fleet)",
        )
        parser.add_argument("--operator", help="who is acting (default: $SIMPUL_OPERATOR)")
        parser.add_argument("--json", action="store_true", help="print JSON")


def _wrap(handler: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        fleet_dir = args.fleet_dir or default_fleet_dir()
        path = fleet_dir / DB_NAME
        if not path.exists():
            print(f"simpul rollout: error: no fleet.db in {fleet_dir}", file=sys.stderr)
            return 2
        store = FleetStore(path)
        try:
            return handler(args, store, fleet_dir)
        except (FleetError, ValueError, OSError) as exc:
            print(f"simpul rollout: error: {exc}", file=sys.stderr)
            return 1
        finally:
            store.close()

    return run


def _start(args: argparse.Namespace, store: FleetStore, fleet_dir: Path) -> int:
    operator = operator_name(args.operator)
    try:
        waves = WaveSpec(
            canary=args.canary,
            percents=tuple(int(p) for p in args.waves.split(",")),
            soak_s=_soak(args.soak),
        )
        limits = limits_from(args.max_failures, args.confirm_within, args.silent_after,
                             args.max_reboots)  # fmt: skip
        window = parse_window(args.window)
    except ValueError as exc:
        print(f"simpul rollout start: error: {exc}", file=sys.stderr)
        return 2
    release = args.release
    if args.release_file is not None:
        release = operations.add_release(
            store, fleet_dir, args.release_file.read_bytes(), operator=operator
        )
    request = operations.RolloutRequest(
        release=release,
        target=Target(tuple(args.site), tuple(args.kind), tuple(args.tag), tuple(args.board)),
        waves=waves,
        limits=limits,
        window=window,
        revert_from=args.revert_from,
        rollout_id=args.id,
    )
    rollout = operations.start_rollout(store, fleet_dir, request, operator=operator)
    return _show(args, store, rollout)


def _soak(text: str) -> int | tuple[int, ...]:
    try:
        figures = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--soak {text!r}: seconds, or seconds per wave, e.g. 3600,900") from None
    return figures[0] if len(figures) == 1 else figures


def _move(args: argparse.Namespace, store: FleetStore, fleet_dir: Path) -> int:
    action = {
        "pause": operations.pause_rollout,
        "resume": operations.resume_rollout,
        "abort": operations.abort_rollout,
    }[args.verb]
    rollout = action(store, args.rollout, operator=operator_name(args.operator))
    return _show(args, store, rollout)


def _status(args: argparse.Namespace, store: FleetStore, fleet_dir: Path) -> int:
    if args.rollout:
        rollout = store.rollout(args.rollout)
        if rollout is None:
            print(f"simpul rollout status: error: no rollout {args.rollout!r}", file=sys.stderr)
            return 1
        return _show(args, store, rollout)
    found = store.rollouts()
    if args.json:
        print(json.dumps({"rollouts": [describe(store, r) for r in found]}, indent=2))
        return 0
    rows = [
        [r.id, str(r.release), r.state, _wave_text(store, r), when(r.updated_ms), r.reason or ""]
        for r in found
    ]
    print(table(["ROLLOUT", "RELEASE", "STATE", "WAVE", "UPDATED", "REASON"], rows))
    return 0


def describe(store: FleetStore, rollout: Rollout) -> dict[str, Any]:
    """A rollout with its waves' progress, as ``--json`` prints it."""
    boards = store.rollout_boards(rollout.id)
    waves = []
    for index, members in enumerate(rollout.plan.get("waves") or ()):
        counts = Counter(b.status for b in boards if b.wave == index)
        waves.append(
            {"wave": index, "boards": len(members), "status": dict(sorted(counts.items()))}
        )
    return {
        "id": rollout.id,
        "release": rollout.release,
        "revert": rollout.revert,
        "state": rollout.state,
        "reason": rollout.reason,
        "target": rollout.target,
        "passed": rollout.plan.get("passed", -1),
        "soak_s": rollout.plan.get("soak_s"),
        "limits": dict(rollout.limits),
        "window": rollout.window,
        "waves": waves,
        "failed": {b.board_id: b.status for b in boards if b.status == "failed"},
        "operator": rollout.operator,
        "created_ms": rollout.created_ms,
        "updated_ms": rollout.updated_ms,
    }


def _wave_text(store: FleetStore, rollout: Rollout) -> str:
    total = len(rollout.plan.get("waves") or ())
    return f"{int(rollout.plan.get('passed', -1)) + 1}/{total} passed"


def _show(args: argparse.Namespace, store: FleetStore, rollout: Rollout) -> int:
    found = describe(store, rollout)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    print(f"rollout {rollout.id}: release {rollout.release}, {rollout.state}")
    if rollout.reason:
        print(f"  reason: {rollout.reason}")
    if rollout.revert:
        print(f"  a halt or abort takes boards that took it to release {rollout.revert}")
    rows = [
        [str(w["wave"]), str(w["boards"]), ", ".join(f"{k} {v}" for k, v in w["status"].items())]
        for w in found["waves"]
    ]
    print(table(["WAVE", "BOARDS", "STATUS"], rows))
    return 0


__all__ = ["add_commands", "describe"]
