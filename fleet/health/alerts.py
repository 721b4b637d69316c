"""Alerts with hysteresis: a finding raises an alert only once it has persisted, and the
alert clears only once the finding has stayed away, so a value hovering at a threshold does
not page anyone every cycle.

A pure state machine: :func:`step` takes the counters kept from the previous evaluation
(the store persists them, ``to_json``/``from_json``) and this evaluation's findings, and
returns the new counters and the transitions. Per (rule, subject):

- not raised, finding present: ``seen`` counts up; at ``raise_after`` the alert is raised;
- not raised, finding absent: the counter is dropped (persistence means in a row);
- raised, finding present: ``absent`` goes back to 0, the newest finding is kept;
- raised, finding absent: ``absent`` counts up; at ``clear_after`` the alert clears and the
  counter is dropped.

Acknowledging an alert is the store's business: it changes nothing here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fleet.health.model import Finding

AlertKey = tuple[str, str]  # (rule, subject)


@dataclass(frozen=True, slots=True)
class AlertCounter:
    """Where one (rule, subject) stands: raised or not, and its newest finding."""

    finding: Finding
    raised: bool = False
    seen: int = 0  # evaluations in a row with the finding
    absent: int = 0  # evaluations in a row without it, while raised

    def to_json(self) -> dict[str, Any]:
        f = self.finding
        return {
            "rule": f.rule,
            "subject": f.subject,
            "subject_kind": f.subject_kind,
            "severity": f.severity,
            "detail": dict(f.detail),
            "raised": self.raised,
            "seen": self.seen,
            "absent": self.absent,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> AlertCounter:
        finding = Finding(
            doc["rule"], doc["subject"], doc["subject_kind"], doc["severity"], doc["detail"]
        )
        return cls(finding, bool(doc["raised"]), int(doc["seen"]), int(doc["absent"]))


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert raised (``detail``: the finding's) or cleared (``detail``: its last finding's).

    ``evaluations``: how many in a row the finding was present (raised) or absent (cleared).
    """

    change: Literal["raised", "cleared"]
    finding: Finding
    evaluations: int

    @property
    def key(self) -> AlertKey:
        return self.finding.key


def step(
    counters: Mapping[AlertKey, AlertCounter],
    findings: Iterable[Finding],
    *,
    raise_after: int,
    clear_after: int,
) -> tuple[dict[AlertKey, AlertCounter], list[Transition]]:
    """One evaluation's findings applied to the counters: (new counters, transitions)."""
    if raise_after < 1 or clear_after < 1:
        raise ValueError("raise_after and clear_after must be at least 1")
    new: dict[AlertKey, AlertCounter] = {}
    transitions: list[Transition] = []
    for finding in findings:
        key = finding.key
        if key in new:
            continue  # one finding per (rule, subject) and evaluation; evaluate() makes it so
        old = counters.get(key)
        if old is not None and old.raised:
            new[key] = AlertCounter(finding, True, old.seen + 1, 0)
            continue
        seen = (old.seen if old is not None else 0) + 1
        raised = seen >= raise_after
        new[key] = AlertCounter(finding, raised, seen, 0)
        if raised:
            transitions.append(Transition("raised", finding, seen))
    for key, old in counters.items():
        if key in new or not old.raised:
            continue
        absent = old.absent + 1
        if absent >= clear_after:
            transitions.append(Transition("cleared", old.finding, absent))
        else:
            new[key] = AlertCounter(old.finding, True, old.seen, absent)
    return new, transitions
