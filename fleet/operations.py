"""The operator's rollout actions: start, pause, resume, abort. What ``simpul rollout`` and the
console call; each checks what it is asked, changes fleet.db and appends an audit entry
(also when it fails, with the error as the result).

None of them talks to the broker: ``simpul fleet serve`` publishes the gateways' new
desired-state documents on its next cycle (:meth:`fleet.engine.FleetEngine.publish`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from fleet import keys as fleet_keys
from fleet import rollouts
from fleet.engine import board_refs
from fleet.errors import FleetError
from fleet.records import Rollout
from fleet.release import decode_release, resign_release, verify_release
from fleet.rollouts import Target, WaveSpec
from fleet.store import FleetStore
from gateway.control.messages import Limits

T = TypeVar("T")

#: Rollout ids: short, for commands and topics' logs.
_MAX_ID: Final = 64


class RolloutError(FleetError, ValueError):
    """A rollout action the fleet refuses; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class RolloutRequest:
    """What ``simpul rollout start`` asks for."""

    release: int
    target: Target
    waves: WaveSpec = field(default_factory=WaveSpec)
    limits: Limits = field(default_factory=Limits)
    window: tuple[int, int] | None = None
    #: The release boards go back to on a halt or abort (None: the one most boards run).
    revert_from: int | None = None
    rollout_id: str | None = None


def add_release(store: FleetStore, fleet_dir: Path, data: bytes, *, operator: str) -> int:
    """Verify a release file against the fleet's root key and keep it in fleet.db; its seq.
    Adding the same release again is not an error."""

    def act() -> int:
        verified = verify_release(data, fleet_keys.root_public_key(fleet_dir), now=int(time.time()))
        manifest = verified.release.manifest
        if store.release_data(manifest.seq) not in (None, data):
            raise RolloutError(f"another release with seq {manifest.seq} is already held")
        if store.release_data(manifest.seq) is None:
            store.add_release(manifest.seq, manifest.version, manifest.hw, data)
        return int(manifest.seq)

    return _audited(store, operator, "release.add", "release", {"bytes": len(data)}, act)


def start_rollout(
    store: FleetStore, fleet_dir: Path, request: RolloutRequest, *, operator: str
) -> Rollout:
    """Plan a rollout and store it running; the engine publishes it."""
    detail = {
        "release": request.release,
        "target": request.target.as_json(),
        "canary": request.waves.canary,
        "percents": list(request.waves.percents),
        "soak_s": request.waves.soak_s
        if isinstance(request.waves.soak_s, int)
        else list(request.waves.soak_s),
    }
    name = request.rollout_id or "pending"
    return _audited(
        store,
        operator,
        "rollout.start",
        name,
        detail,
        lambda: _start(store, fleet_dir, request, operator),
    )


def _start(store: FleetStore, fleet_dir: Path, request: RolloutRequest, operator: str) -> Rollout:
    data = store.release_data(request.release)
    if data is None:
        raise RolloutError(
            f"the fleet holds no release {request.release}: add it with"
            " 'simpul rollout start --release-file FILE' or 'simpul fleet releases add'"
        )
    try:
        targeted = rollouts.select(board_refs(store.boards()), request.target)
    except ValueError as exc:
        raise RolloutError(str(exc)) from None
    if not targeted:
        raise RolloutError("no enrolled board matches the rollout's target")
    busy = {
        board.board_id
        for rollout in store.rollouts(states=rollouts.ACTIVE)
        for board in store.rollout_boards(rollout.id)
    }
    clash = sorted(b.board_id for b in targeted if b.board_id in busy)
    if clash:
        raise RolloutError(
            f"{len(clash)} target boards are in an unfinished rollout ({', '.join(clash[:5])}):"
            " abort it or wait for it to finish"
        )
    already = [b for b in targeted if b.running == request.release]
    targeted = [b for b in targeted if b.running != request.release]
    if not targeted:
        raise RolloutError(f"every target board runs release {request.release} already")
    rollout_id = request.rollout_id or _new_id(request.release, targeted)
    if not 0 < len(rollout_id) <= _MAX_ID or store.rollout(rollout_id) is not None:
        raise RolloutError(f"rollout id {rollout_id!r} is taken or not 1 to {_MAX_ID} characters")
    plan = rollouts.plan_waves(targeted, request.waves, seed=rollout_id)
    source = request.revert_from
    if source is None:
        source = rollouts.revert_source(plan.previous)
    revert = 0
    if source:
        if source == request.release:
            raise RolloutError("the revert release cannot be the release rolled out")
        old = store.release_data(source)
        if old is None:
            raise RolloutError(
                f"the boards run release {source}, which the fleet does not hold: add its file"
                " (simpul fleet releases add) so a halt can take them back to it"
            )
        again, verified = resign_release(fleet_dir, old, now=int(time.time()))
        revert = int(verified.release.manifest.seq)
        manifest = decode_release(again).manifest
        store.add_release(revert, manifest.version, manifest.hw, again)
    now = int(time.time() * 1000)
    rollout = Rollout(
        id=rollout_id,
        release=request.release,
        revert=revert or None,
        previous=dict(plan.previous),
        state="running",
        reason=None,
        target=request.target.as_json(),
        plan={
            "waves": [list(w) for w in plan.waves],
            "per_gateway": {
                g: [list(w.boards) for w in waves] for g, waves in plan.per_gateway.items()
            },
            "soak_s": list(plan.soak_s),
            "passed": -1,
            "canary": request.waves.canary,
            "percents": list(request.waves.percents),
            "already": [b.board_id for b in already],
            "revert_from": source,
        },
        limits={
            "failures": request.limits.failures,
            "confirm_s": request.limits.confirm_s,
            "silent_s": request.limits.silent_s,
            "reboots": request.limits.reboots,
        },
        window=None if request.window is None else list(request.window),
        created_ms=now,
        updated_ms=now,
        operator=operator,
    )
    store.put_rollout(rollout)
    store.put_rollout_boards(
        rollout_id,
        [(b, index, "pending") for index, wave in enumerate(plan.waves) for b in wave],
    )
    return rollout


def pause_rollout(store: FleetStore, rollout_id: str, *, operator: str) -> Rollout:
    """No new wave starts; boards already told keep the release."""
    return _move(store, rollout_id, "pause", ("running",), "paused", operator)


def resume_rollout(store: FleetStore, rollout_id: str, *, operator: str) -> Rollout:
    """A paused (or halted, once its cause is understood) rollout runs on."""
    return _move(store, rollout_id, "resume", ("paused", "halted"), "running", operator)


def abort_rollout(store: FleetStore, rollout_id: str, *, operator: str) -> Rollout:
    """Every board goes back to what it ran before: those that took the release to the
    revert release, the others stay."""
    return _move(store, rollout_id, "abort", rollouts.ACTIVE, "aborted", operator)


def _move(
    store: FleetStore,
    rollout_id: str,
    verb: str,
    allowed: tuple[str, ...],
    to: str,
    operator: str,
) -> Rollout:
    def act() -> Rollout:
        rollout = store.rollout(rollout_id)
        if rollout is None:
            raise RolloutError(f"no rollout {rollout_id!r} (simpul rollout status lists them)")
        if rollout.state not in allowed:
            raise RolloutError(f"rollout {rollout_id} is {rollout.state}: it cannot {verb}")
        reason = f"{verb} by {operator}"
        return store.update_rollout(rollout_id, state=to, reason=reason)

    return _audited(store, operator, f"rollout.{verb}", rollout_id, {}, act)


def _audited(
    store: FleetStore,
    operator: str,
    action: str,
    target: str,
    detail: dict[str, Any],
    act: Callable[[], T],
) -> T:
    try:
        result = act()
    except (FleetError, ValueError, OSError) as exc:
        store.append_audit(operator, action, target, detail, f"error: {exc}")
        raise
    if isinstance(result, Rollout):
        target = result.id
    store.append_audit(operator, action, target, detail, "ok")
    return result


def _new_id(release: int, boards: list[rollouts.BoardRef]) -> str:
    digest = hashlib.sha256(
        f"{release}:{time.time_ns()}:{','.join(b.board_id for b in boards)}".encode()
    ).hexdigest()
    return f"r{release}-{digest[:6]}"


__all__ = [
    "RolloutError",
    "RolloutRequest",
    "abort_rollout",
    "add_release",
    "pause_rollout",
    "resume_rollout",
    "start_rollout",
]
