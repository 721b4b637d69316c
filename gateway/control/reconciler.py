"""The release each board should run: the desired-state document's releases, and the
rollout's waves driven on the gateway itself, so a rollout goes on while the fleet manager
or the backhaul is away.

Pure: :func:`reconcile` takes the document, what the gateway knows of its boards, the
rollout's progress so far and the time, and returns the desired release of every board,
the new progress and what happened (for the event stream). The control process persists
the progress (:meth:`Progress.to_json`) and calls it every few seconds.

A rollout's waves run in order. Wave *w*'s boards are told the release when the wave starts;
the wave is judged on the gateway's own evidence:

- a board **fails** when it rejects or rolls back the release, when it has not confirmed
  it ``limits.confirm_s`` after the wave started, when it is silent (no health report)
  ``limits.silent_s`` after confirming, or when it rebooted more than ``limits.reboots``
  times after confirming;
- the wave **halts** the rollout when more than ``limits.failures`` of its boards failed;
- the wave **passes** when every board has confirmed or failed (within the limit) and the
  last confirmation is ``soak_s`` old; the next wave starts then, inside the maintenance
  ``window`` if the plan has one. A wave that has none of this gateway's boards passes only
  when the fleet says it passed fleet-wide (``plan.passed``): no evidence, no advance.

A halt (the gateway's own, or the fleet's ``halted``/``aborted`` state) tells every board
that installed the release to take ``plan.revert``, the previous release's files signed
under a later seq (a board never installs a lower seq than it has run), and every other
board its release from before the rollout. Boards of waves not started are never told the
release.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final

from gateway.control.messages import Desired, RolloutPlan

#: The board's OTA states (``firmware/otastate.py``) that mean it refused or left a release.
FAILED_STATES: Final = frozenset({"rejected", "rolled_back"})
_MS: Final = 1000


@dataclass(frozen=True, slots=True)
class BoardView:
    """What the gateway knows of one board (its registry and ``board_ota``)."""

    #: The release its running slot holds (0: the factory application).
    running: int = 0
    ota_state: str | None = None
    ota_detail: str | None = None
    #: When the gateway recorded that OTA state, Unix ms.
    ota_ms: int = 0
    #: When its last health report came, Unix ms (0: never).
    health_ms: int = 0
    boot_count: int | None = None


@dataclass(slots=True)
class BoardProgress:
    """One rollout board's standing: ``updating``, ``confirmed``, ``failed``, ``reverted``."""

    status: str = "updating"
    confirmed_ms: int = 0
    boots_at_confirm: int | None = None
    reason: str | None = None


@dataclass(slots=True)
class Progress:
    """How far this gateway has taken one rollout."""

    rollout: str
    #: The highest wave started (-1: none yet).
    wave: int = -1
    #: The highest wave passed on this gateway's evidence (-1: none).
    passed: int = -1
    #: When each started wave started, Unix ms.
    started_ms: list[int] = field(default_factory=list)
    #: ``running``, ``halted`` (by the gateway) or ``done``; the fleet's own states come
    #: with the plan.
    state: str = "running"
    reason: str | None = None
    boards: dict[str, BoardProgress] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Progress:
        raw = json.loads(text)
        boards = {b: BoardProgress(**p) for b, p in raw.pop("boards").items()}
        return cls(**raw, boards=boards)

    def report(self, plan: RolloutPlan) -> dict[str, Any]:
        """The rollout part of the gateway's state message."""
        state = plan.state if plan.state in ("halted", "aborted", "paused") else self.state
        return {
            "id": self.rollout,
            "wave": self.wave,
            "passed": self.passed,
            "state": state,
            "reason": self.reason if self.state == "halted" else plan.reason,
            "boards": {
                b: {"status": p.status, "reason": p.reason} for b, p in sorted(self.boards.items())
            },
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """What :func:`reconcile` decided."""

    #: The release every board should run (boards with none set are absent).
    desired: dict[str, int]
    progress: Progress | None
    #: What changed, for the event stream: ("wave_started" | "wave_passed" | "halted" |
    #: "board_failed" | "done", detail).
    events: list[tuple[str, dict[str, Any]]]


def reconcile(
    doc: Desired | None,
    boards: Mapping[str, BoardView],
    progress: Progress | None,
    now_ms: int,
) -> Outcome:
    """Every board's desired release under ``doc``, and the rollout's next progress."""
    if doc is None:
        return Outcome({}, None, [])
    desired = {b: e.release for b, e in doc.boards.items() if e.release}
    plan = doc.rollout
    if plan is None:
        return Outcome(desired, None, [])
    if progress is None or progress.rollout != plan.id:
        progress = Progress(plan.id)
    else:
        progress = _copy(progress)
    events: list[tuple[str, dict[str, Any]]] = []
    stopped = plan.state in ("halted", "aborted") or progress.state == "halted"
    if stopped:
        _revert(plan, boards, progress, desired)
        return Outcome(desired, progress, events)
    if plan.state == "done":
        for wave in plan.waves:
            for board in wave.boards:
                desired[board] = plan.release
        return Outcome(desired, progress, events)
    if progress.wave >= 0 and progress.state == "running":
        _judge(plan, boards, progress, now_ms, events)
        if progress.state == "halted":
            _revert(plan, boards, progress, desired)
            return Outcome(desired, progress, events)
    if plan.state == "running" and progress.state == "running":
        _advance(plan, progress, now_ms, events)
    for index in range(progress.wave + 1):
        for board in plan.waves[index].boards:
            desired[board] = plan.release
    return Outcome(desired, progress, events)


def _copy(progress: Progress) -> Progress:
    return replace(
        progress,
        started_ms=list(progress.started_ms),
        boards={b: replace(p) for b, p in progress.boards.items()},
    )


def _judge(
    plan: RolloutPlan,
    boards: Mapping[str, BoardView],
    progress: Progress,
    now_ms: int,
    events: list[tuple[str, dict[str, Any]]],
) -> None:
    """Update the standing of the current wave's boards; halt or pass the wave."""
    index = progress.wave
    wave = plan.waves[index]
    started = progress.started_ms[index]
    limits = plan.limits
    for board in wave.boards:
        mine = progress.boards.setdefault(board, BoardProgress())
        if mine.status == "failed":
            continue
        view = boards.get(board, BoardView())
        why = _failure(plan, view, mine, started, now_ms)
        if why is not None:
            mine.status, mine.reason = "failed", why
            events.append(("board_failed", {"board": board, "wave": index, "reason": why}))
        elif (
            mine.status == "updating"
            and view.running == plan.release
            and view.ota_state == "confirmed"
        ):
            mine.status, mine.confirmed_ms = "confirmed", now_ms
            mine.boots_at_confirm = view.boot_count
    statuses = [progress.boards[b] for b in wave.boards]
    failed = [b for b in wave.boards if progress.boards[b].status == "failed"]
    if failed and len(failed) > limits.failures * len(wave.boards):
        named = ", ".join(f"{b} ({progress.boards[b].reason})" for b in failed[:10])
        progress.state = "halted"
        progress.reason = (
            f"wave {index}: {len(failed)} of {len(wave.boards)} boards failed: {named}"
        )
        events.append(("halted", {"wave": index, "reason": progress.reason, "boards": failed}))
        return
    if progress.passed >= index:
        return
    if not wave.boards:
        if plan.passed >= index:
            progress.passed = index
            events.append(("wave_passed", {"wave": index, "by": "fleet"}))
        return
    if any(p.status == "updating" for p in statuses):
        return
    settled = max((p.confirmed_ms for p in statuses if p.status == "confirmed"), default=started)
    if now_ms - settled >= wave.soak_s * _MS:
        progress.passed = index
        events.append(("wave_passed", {"wave": index, "by": "gateway"}))


def _failure(
    plan: RolloutPlan, view: BoardView, mine: BoardProgress, started: int, now_ms: int
) -> str | None:
    """Why this board failed the release, or None."""
    limits = plan.limits
    if mine.status == "updating":
        if (
            view.ota_state in FAILED_STATES
            and view.ota_ms >= started
            and view.running != plan.release
        ):
            return f"{view.ota_state}: {view.ota_detail or 'no detail'}"
        if now_ms - started > limits.confirm_s * _MS:
            return f"not confirmed within {limits.confirm_s} s"
        return None
    # Confirmed: now the release must keep the board reporting and up.
    if view.running != plan.release and view.ota_state in FAILED_STATES:
        return f"{view.ota_state} after confirming: {view.ota_detail or 'no detail'}"
    last = max(view.health_ms, mine.confirmed_ms)
    if limits.silent_s and now_ms - last > limits.silent_s * _MS:
        return f"silent for {(now_ms - last) // _MS} s after the update"
    if (
        limits.reboots
        and view.boot_count is not None
        and mine.boots_at_confirm is not None
        and view.boot_count - mine.boots_at_confirm > limits.reboots
    ):
        return f"rebooted {view.boot_count - mine.boots_at_confirm} times after the update"
    return None


def _advance(
    plan: RolloutPlan, progress: Progress, now_ms: int, events: list[tuple[str, dict[str, Any]]]
) -> None:
    """Start the next wave when the current one passed, inside the window."""
    while progress.wave + 1 < len(plan.waves) and progress.passed >= progress.wave:
        if not in_window(plan.window, now_ms):
            return
        progress.wave += 1
        progress.started_ms.append(now_ms)
        for board in plan.waves[progress.wave].boards:
            progress.boards.setdefault(board, BoardProgress())
        events.append(
            (
                "wave_started",
                {"wave": progress.wave, "boards": len(plan.waves[progress.wave].boards)},
            )
        )
        if plan.waves[progress.wave].boards or plan.passed < progress.wave:
            return
        progress.passed = progress.wave  # empty here, and passed fleet-wide already
    last = len(plan.waves) - 1
    if progress.wave == last and progress.passed >= last and progress.state != "done":
        progress.state = "done"
        events.append(("done", {"waves": len(plan.waves)}))


def _revert(
    plan: RolloutPlan,
    boards: Mapping[str, BoardView],
    progress: Progress,
    desired: dict[str, int],
) -> None:
    """Boards that took the release go to the revert release; the rest keep their own."""
    for index in range(progress.wave + 1):
        for board in plan.waves[index].boards:
            view = boards.get(board, BoardView())
            mine = progress.boards.setdefault(board, BoardProgress())
            took = view.running in (plan.release, plan.revert) or mine.status == "confirmed"
            if took and plan.revert:
                desired[board] = plan.revert
                if view.running == plan.revert:
                    mine.status = "reverted"


def in_window(window: tuple[int, int] | None, now_ms: int) -> bool:
    """Whether ``now_ms`` (Unix ms) falls in the UTC minutes-of-day ``window`` [start, end)."""
    if window is None:
        return True
    start, end = window
    minute = (now_ms // 60_000) % 1440
    if start <= end:
        return start <= minute < end
    return minute >= start or minute < end  # across midnight


__all__ = ["BoardProgress", "BoardView", "Outcome", "Progress", "in_window", "reconcile"]
