"""Rollouts: which boards get a release in which wave, and how the fleet sees them go.

Pure functions; ``fleet.engine`` keeps rollouts in fleet.db and publishes their plans.

A rollout moves its target boards (by site, kind, tag or list) to one release in waves: a
**canary** wave of a few boards spread over the gateways, then waves that each bring the
share of the remaining boards to a percentage (``25, 100``: a quarter, then the rest). Each
gateway gets the whole plan for its own boards in its desired-state document
(``gateway.control.messages.RolloutPlan``) and drives the waves itself
(``gateway.control.reconciler``), so the rollout goes on while the fleet manager or the
backhaul is away. The fleet adds what no single gateway can know:

- a wave has **passed fleet-wide** when every gateway with boards in it says it passed
  (:func:`fleet_passed`); a gateway with no boards in a wave waits for that before it goes on;
- a halt anywhere halts it everywhere (:func:`halted_by`), and so does data that got worse
  after the update on the fleet's longer view (battery drain, implausible readings,
  ``fleet.health.worse_after``), which the engine checks.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.control.messages import Limits, Wave

#: The rollout states the fleet keeps; the gateways get them in their plans.
STATES: Final = ("running", "paused", "halted", "aborted", "done")
#: States in which a rollout still holds its boards (one such rollout per board).
ACTIVE: Final = ("running", "paused", "halted")
#: States in which the gateways still act on a rollout's plan (an aborted one reverts).
IN_FORCE: Final = (*ACTIVE, "aborted")


@dataclass(frozen=True, slots=True)
class BoardRef:
    """A board as a rollout sees it."""

    board_id: str
    site: str
    gateway: str
    kind: str
    tags: frozenset[str] = frozenset()
    #: The release it runs now (0: the factory application).
    running: int = 0


@dataclass(frozen=True, slots=True)
class Target:
    """Which boards a rollout is for: every board matching all the filters given, plus the
    boards listed by id. No filter and no list is refused (a rollout names its boards)."""

    sites: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    boards: tuple[str, ...] = ()

    def empty(self) -> bool:
        return not (self.sites or self.kinds or self.tags or self.boards)

    def matches(self, board: BoardRef) -> bool:
        if board.board_id in self.boards:
            return True
        if not (self.sites or self.kinds or self.tags):
            return False
        return (
            (not self.sites or board.site in self.sites)
            and (not self.kinds or board.kind in self.kinds)
            and (not self.tags or bool(board.tags & set(self.tags)))
        )

    def as_json(self) -> dict[str, list[str]]:
        return {
            "sites": list(self.sites),
            "kinds": list(self.kinds),
            "tags": list(self.tags),
            "boards": list(self.boards),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Target:
        return cls(*(tuple(raw.get(k, ())) for k in ("sites", "kinds", "tags", "boards")))


@dataclass(frozen=True, slots=True)
class WaveSpec:
    """How a rollout is cut into waves."""

    canary: int = 1
    #: Cumulative shares (percent) of the boards after the canaries, one per wave; the
    #: last is 100.
    percents: tuple[int, ...] = (100,)
    #: Seconds a wave soaks after its last board confirmed, before the next starts: one
    #: figure for every wave, or one per wave (the canary's first when there is one).
    soak_s: int | tuple[int, ...] = 600

    def __post_init__(self) -> None:
        if self.canary < 0:
            raise ValueError("canary is a number of boards, 0 or more")
        if not self.percents or self.percents[-1] != 100:
            raise ValueError("wave percentages end at 100")
        if any(not 0 < p <= 100 for p in self.percents) or list(self.percents) != sorted(
            set(self.percents)
        ):
            raise ValueError("wave percentages grow, each between 1 and 100")
        soaks = self.soak_s if isinstance(self.soak_s, tuple) else (self.soak_s,)
        if not soaks or any(s < 0 for s in soaks):
            raise ValueError("soak is seconds, 0 or more")

    def soak(self, wave: int) -> int:
        """Wave ``wave``'s soak: a list too short repeats its last figure (and figures for
        waves a small fleet does not need are not used)."""
        if isinstance(self.soak_s, int):
            return self.soak_s
        return self.soak_s[min(wave, len(self.soak_s) - 1)]


@dataclass(frozen=True, slots=True)
class Plan:
    """A rollout's waves, fleet-wide, and each gateway's share of them."""

    waves: tuple[tuple[str, ...], ...]
    per_gateway: Mapping[str, tuple[Wave, ...]]
    #: Each wave's soak, seconds.
    soak_s: tuple[int, ...]
    previous: Mapping[str, int] = field(default_factory=dict)

    @property
    def boards(self) -> list[str]:
        return [b for wave in self.waves for b in wave]


def select(boards: Iterable[BoardRef], target: Target) -> list[BoardRef]:
    """The boards ``target`` names, by id."""
    if target.empty():
        raise ValueError("a rollout needs a target: --site, --kind, --tag or --board")
    return sorted((b for b in boards if target.matches(b)), key=lambda b: b.board_id)


def plan_waves(boards: Sequence[BoardRef], spec: WaveSpec, *, seed: str) -> Plan:
    """Cut ``boards`` into waves: canaries round-robin over their gateways (so each gateway's
    first boards are tried first), then the rest in shuffled order (reproducible from
    ``seed``, the rollout's id) by the cumulative percentages."""
    if not boards:
        raise ValueError("no board matches the rollout's target")
    rng = random.Random(hashlib.sha256(seed.encode()).digest())
    by_gateway: dict[str, list[BoardRef]] = {}
    for board in sorted(boards, key=lambda b: b.board_id):
        by_gateway.setdefault(board.gateway, []).append(board)
    for members in by_gateway.values():
        rng.shuffle(members)
    canaries: list[str] = []
    queues = [list(m) for _, m in sorted(by_gateway.items())]
    while len(canaries) < min(spec.canary, len(boards)):
        for queue in queues:
            if queue and len(canaries) < spec.canary:
                canaries.append(queue.pop(0).board_id)
    rest = [b.board_id for queue in queues for b in queue]
    rng.shuffle(rest)
    waves: list[tuple[str, ...]] = [tuple(canaries)] if canaries else []
    done = 0
    for percent in spec.percents:
        upto = math.ceil(len(rest) * percent / 100)
        if upto > done:
            waves.append(tuple(rest[done:upto]))
            done = upto
    gateway_of = {b.board_id: b.gateway for b in boards}
    soaks = tuple(spec.soak(i) for i in range(len(waves)))
    per_gateway = {
        gateway: tuple(
            Wave(tuple(sorted(b for b in wave if gateway_of[b] == gateway)), soaks[i])
            for i, wave in enumerate(waves)
        )
        for gateway in by_gateway
    }
    previous = {b.board_id: b.running for b in boards}
    return Plan(tuple(waves), per_gateway, soaks, previous)


def revert_source(previous: Mapping[str, int]) -> int:
    """The release most target boards ran before (what a halt takes them back to); 0 when
    most ran the factory application, which no release file holds."""
    counts = Counter(previous.values())
    if not counts:
        return 0
    return max(counts.items(), key=lambda item: (item[1], item[0]))[0]


def fleet_passed(
    per_gateway: Mapping[str, Sequence[Wave]], reports: Mapping[str, Mapping[str, Any] | None]
) -> int:
    """The highest wave every gateway with boards in it says it passed (-1: none yet).

    ``reports``: each gateway's ``rollout`` part of its last state (None: not heard)."""
    waves = max((len(w) for w in per_gateway.values()), default=0)
    passed = -1
    for index in range(waves):
        for gateway, gw_waves in per_gateway.items():
            if index >= len(gw_waves) or not gw_waves[index].boards:
                continue
            report = reports.get(gateway)
            if report is None or int(report.get("passed", -1)) < index:
                return passed
        passed = index
    return passed


def halted_by(reports: Mapping[str, Mapping[str, Any] | None]) -> tuple[str, str] | None:
    """(gateway, reason) of the first gateway that halted the rollout on its evidence."""
    for gateway, report in sorted(reports.items()):
        if report is not None and report.get("state") == "halted":
            return gateway, str(report.get("reason") or "halted by the gateway")
    return None


def board_statuses(reports: Mapping[str, Mapping[str, Any] | None]) -> dict[str, dict[str, Any]]:
    """Every rollout board's status as its gateway last reported it."""
    found: dict[str, dict[str, Any]] = {}
    for report in reports.values():
        if report is None:
            continue
        boards = report.get("boards")
        if isinstance(boards, dict):
            for board, status in boards.items():
                if isinstance(status, dict):
                    found[str(board)] = status
    return found


def limits_from(failures: float, confirm_s: int, silent_s: int, reboots: int) -> Limits:
    if not 0 <= failures <= 1:
        raise ValueError("failures is a fraction between 0 and 1")
    if min(confirm_s, silent_s, reboots) < 0:
        raise ValueError("limits are 0 or more")
    return Limits(failures, confirm_s, silent_s, reboots)


def parse_window(text: str | None) -> tuple[int, int] | None:
    """``HH:MM-HH:MM`` (UTC) as minutes of the day [start, end); None for no window."""
    if not text:
        return None
    try:
        start, end = text.split("-")
        minutes = []
        for part in (start, end):
            hours, mins = part.split(":")
            value = int(hours) * 60 + int(mins)
            if not 0 <= value <= 1440 or not 0 <= int(mins) < 60:
                raise ValueError
            minutes.append(value)
    except ValueError:
        raise ValueError(f"window {text!r} is not HH:MM-HH:MM (UTC)") from None
    return minutes[0], minutes[1]


__all__ = [
    "ACTIVE",
    "IN_FORCE",
    "STATES",
    "BoardRef",
    "Plan",
    "Target",
    "WaveSpec",
    "board_statuses",
    "fleet_passed",
    "halted_by",
    "limits_from",
    "parse_window",
    "plan_waves",
    "revert_source",
    "select",
]
