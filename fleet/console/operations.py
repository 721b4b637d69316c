"""What the Rollouts, Alerts and Audit screens read: frozen views of rollouts (waves, progress,
why one halted), alerts and the audit log, and the pure functions that make them from fleet.db's
records. :class:`fleet.console.backend.StoreBackend` calls these; tests build views directly.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from fleet.audit import AuditEntry
from fleet.records import Alert, Json, Rollout, RolloutBoard
from fleet.rollouts import Target
from gateway.control.messages import Limits

#: The engine names a board whose data got worse after the update in these words.
_WORSE: Final = re.compile(r"board (\S+) is worse after the update")


# --- rollouts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WaveView:
    """One wave of a rollout and how far its boards got."""

    index: int
    boards: int
    confirmed: int
    failed: int
    #: Boards taken back to the revert release (after a halt or an abort).
    reverted: int
    #: Seconds the wave soaks after its last board confirmed.
    soak_s: int

    @property
    def pending(self) -> int:
        """Boards not settled yet: waiting for their wave, or updating."""
        return self.boards - self.confirmed - self.failed - self.reverted

    @property
    def settled(self) -> int:
        return self.boards - self.pending


@dataclass(frozen=True, slots=True)
class HaltView:
    """Why a rollout halted: who halted it, which rule, which boards, and the numbers."""

    #: The gateway whose evidence halted it (as the rollout's reason names it).
    by: str
    #: ``failures`` (more of a wave's boards failed than its threshold allows),
    #: ``worse`` (a board's data got worse after the update) or ``gateway`` (another reason).
    rule: str
    #: The wave it halted in (``None``: not known).
    wave: int | None
    #: The boards that made it halt.
    boards: tuple[str, ...]
    failed: int
    wave_boards: int
    #: The share of a wave's boards that may fail (0..1).
    threshold: float
    #: The reason as fleet.db records it, word for word.
    reason: str

    @property
    def summary(self) -> str:
        """One line for the operator: the rule broken and its numbers."""
        named = ", ".join(self.boards[:10]) + (" …" if len(self.boards) > 10 else "")
        if self.rule == "failures":
            return (
                f"wave {self.wave}: {self.failed} of {self.wave_boards} boards failed, more than"
                f" the {self.threshold:.0%} allowed ({named})"
            )
        if self.rule == "worse":
            return f"data worse after the update on {named}"
        return f"halted by {self.by}"


@dataclass(frozen=True, slots=True)
class RolloutView:
    """A rollout as the Rollouts screen shows it."""

    rollout_id: str
    release: int
    state: str
    #: Why it is in its state (a halt's evidence, who paused or aborted it), as recorded.
    reason: str | None
    target: Target
    waves: tuple[WaveView, ...]
    #: The wave now running (``None``: done or aborted).
    current_wave: int | None
    #: The release a halt or an abort takes boards back to (``None``: none, they keep theirs),
    #: and the release it is a copy of (what most boards ran before).
    revert: int | None
    revert_from: int | None
    limits: Limits
    #: Boards that run the release now or confirmed it: those an abort takes back.
    took: int
    operator: str
    created_ms: int
    updated_ms: int
    halt: HaltView | None = None

    @property
    def boards(self) -> int:
        return sum(w.boards for w in self.waves)

    @property
    def confirmed(self) -> int:
        return sum(w.confirmed for w in self.waves)


def target_text(target: Target) -> str:
    """``site takengon · kind air · 2 boards``: what a rollout is for, in a line."""
    parts = [
        f"{name} {', '.join(values)}"
        for name, values in (("site", target.sites), ("kind", target.kinds), ("tag", target.tags))
        if values
    ]
    if target.boards:
        parts.append(f"{len(target.boards)} listed boards")
    return " · ".join(parts) or "no target"


def _limits(raw: Mapping[str, Json]) -> Limits:
    default = Limits()
    return Limits(
        float(_number(raw.get("failures"), default.failures)),
        int(_number(raw.get("confirm_s"), default.confirm_s)),
        int(_number(raw.get("silent_s"), default.silent_s)),
        int(_number(raw.get("reboots"), default.reboots)),
    )


def _number(value: Json, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return value


def wave_views(rollout: Rollout, boards: Iterable[RolloutBoard]) -> tuple[WaveView, ...]:
    """Each wave of the rollout's plan with its boards counted by status."""
    plan = rollout.plan if isinstance(rollout.plan, dict) else {}
    members = plan.get("waves") or []
    soaks = plan.get("soak_s") or []
    counts: dict[int, Counter[str]] = {}
    for board in boards:
        counts.setdefault(board.wave, Counter())[board.status] += 1
    views = []
    for index, wave in enumerate(members if isinstance(members, list) else []):
        status = counts.get(index, Counter())
        soak = soaks[index] if isinstance(soaks, list) and index < len(soaks) else 0
        views.append(
            WaveView(
                index=index,
                boards=len(wave) if isinstance(wave, list) else 0,
                confirmed=status["confirmed"],
                failed=status["failed"],
                reverted=status["reverted"],
                soak_s=int(soak) if isinstance(soak, int) else 0,
            )
        )
    return tuple(views)


def halt_view(
    reason: str | None, limits: Limits, waves: Sequence[WaveView], boards: Iterable[RolloutBoard]
) -> HaltView:
    """Why a halted rollout halted, from its recorded reason (``gateway: what it saw``) and its
    boards' statuses: a wave with more failed boards than ``limits.failures`` allows broke
    the failures rule; else a board named worse after the update broke the engine's rule."""
    text = reason or ""
    by, sep, said = text.partition(": ")
    if not sep:
        by, said = "the fleet", text
    failed_by_wave: dict[int, list[str]] = {}
    for board in boards:
        if board.status == "failed":
            failed_by_wave.setdefault(board.wave, []).append(board.board_id)
    for wave in sorted(failed_by_wave, reverse=True):
        size = waves[wave].boards if wave < len(waves) else len(failed_by_wave[wave])
        failed = sorted(failed_by_wave[wave])
        if len(failed) > limits.failures * size:
            return HaltView(by, "failures", wave, tuple(failed), len(failed), size,
                            limits.failures, text)  # fmt: skip
    worse = tuple(_WORSE.findall(said))
    if worse:
        return HaltView(by, "worse", None, worse, 0, 0, limits.failures, text)
    return HaltView(by, "gateway", None, (), 0, 0, limits.failures, text)


def rollout_view(
    rollout: Rollout, boards: Sequence[RolloutBoard], running: Mapping[str, int]
) -> RolloutView:
    """The view of ``rollout`` given its boards' statuses and what each board runs now."""
    plan = rollout.plan if isinstance(rollout.plan, dict) else {}
    waves = wave_views(rollout, boards)
    limits = _limits(rollout.limits)
    passed = int(plan.get("passed", -1))
    current = None
    if rollout.state in ("running", "paused", "halted") and waves:
        current = min(passed + 1, len(waves) - 1)
    took = sum(
        1 for b in boards if b.status == "confirmed" or running.get(b.board_id) == rollout.release
    )
    revert_from = plan.get("revert_from")
    target = rollout.target if isinstance(rollout.target, dict) else {}
    return RolloutView(
        rollout_id=rollout.id,
        release=rollout.release,
        state=rollout.state,
        reason=rollout.reason,
        target=Target.from_json(target),
        waves=waves,
        current_wave=current,
        revert=rollout.revert,
        revert_from=revert_from if isinstance(revert_from, int) and revert_from else None,
        limits=limits,
        took=took,
        operator=rollout.operator,
        created_ms=rollout.created_ms,
        updated_ms=rollout.updated_ms,
        halt=halt_view(rollout.reason, limits, waves, boards)
        if rollout.state == "halted"
        else None,
    )


# --- alerts --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertRow:
    """An alert as the Alerts screen lists it; ``detail`` as (name, value) pairs."""

    alert_id: int
    rule: str
    subject: str
    subject_kind: str
    #: ``open`` or ``cleared``.
    state: str
    #: ``warning`` or ``critical``, as the rule raised it.
    severity: str
    raised_ms: int
    cleared_ms: int | None
    acked_ms: int | None
    acked_by: str | None
    note: str | None
    detail: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class AlertsView:
    """Open alerts (critical first, then oldest first) and recently cleared ones (newest
    first)."""

    open: tuple[AlertRow, ...]
    recent: tuple[AlertRow, ...]


def alert_row(alert: Alert, severity: str) -> AlertRow:
    detail = tuple(
        (key, value if isinstance(value, str) else json.dumps(value, sort_keys=True))
        for key, value in sorted(alert.detail.items())
    )
    return AlertRow(
        alert_id=alert.id,
        rule=alert.rule,
        subject=alert.subject,
        subject_kind=alert.subject_kind,
        state=alert.state,
        severity=severity,
        raised_ms=alert.raised_ms,
        cleared_ms=alert.cleared_ms,
        acked_ms=alert.acked_ms,
        acked_by=alert.acked_by,
        note=alert.note,
        detail=detail,
    )


def alerts_view(open_rows: Iterable[AlertRow], recent_rows: Iterable[AlertRow]) -> AlertsView:
    """Open alerts, critical then oldest first; of the recent ones, those cleared."""
    opened = sorted(open_rows, key=lambda a: (a.severity != "critical", a.raised_ms, a.alert_id))
    cleared = [a for a in recent_rows if a.state != "open"]
    return AlertsView(tuple(opened), tuple(cleared))


# --- audit ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditRow:
    seq: int
    at_ms: int
    operator: str
    action: str
    target: str
    result: str
    #: The entry's detail as compact JSON.
    detail: str


@dataclass(frozen=True, slots=True)
class AuditView:
    """The audit entries that match a filter, newest first, and whether the chain verifies."""

    entries: tuple[AuditRow, ...]
    #: Entries in the log, matching or not.
    total: int
    intact: bool
    #: What :func:`fleet.audit.verify` found, one line each (none when intact).
    problems: tuple[str, ...]


def audit_row(entry: AuditEntry) -> AuditRow:
    return AuditRow(
        seq=entry.seq,
        at_ms=entry.at_ms,
        operator=entry.operator,
        action=entry.action,
        target=entry.target,
        result=entry.result,
        detail=json.dumps(dict(entry.detail), sort_keys=True, separators=(",", ":")),
    )


def filter_terms(text: str | None) -> tuple[str, ...]:
    """The filter's words, lower case; an entry matches when it holds every one."""
    return tuple((text or "").lower().split())


def audit_matches(entry: AuditEntry | AuditRow, terms: Sequence[str]) -> bool:
    """Every term is in the entry's operator, action, target or result."""
    hay = "\n".join((entry.operator, entry.action, entry.target, entry.result)).lower()
    return all(term in hay for term in terms)


def newest_matching(
    entries: Sequence[AuditEntry], text: str | None, limit: int
) -> tuple[AuditRow, ...]:
    """At most ``limit`` entries that match ``text``, newest first."""
    terms = filter_terms(text)
    found: list[AuditRow] = []
    for entry in reversed(entries):
        if len(found) >= limit:
            break
        if audit_matches(entry, terms):
            found.append(audit_row(entry))
    return tuple(found)


__all__ = [
    "AlertRow",
    "AlertsView",
    "AuditRow",
    "AuditView",
    "HaltView",
    "RolloutView",
    "WaveView",
    "alert_row",
    "alerts_view",
    "audit_matches",
    "audit_row",
    "filter_terms",
    "halt_view",
    "newest_matching",
    "rollout_view",
    "target_text",
    "wave_views",
]
