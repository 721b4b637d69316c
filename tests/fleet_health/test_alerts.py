"""Alerts raise after ``raise_after`` evaluations in a row and clear after ``clear_after``."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pytest

from fleet.health import AlertCounter, AlertKey, Finding, Transition, step

LOW = Finding("battery_low", "b1", "board", "warning", {"battery_v": 3.3})
HEAP = Finding("heap_low", "b1", "board", "warning", {"heap_free": 100})


class Alerts:
    """The counters kept between evaluations, as the store would keep them."""

    def __init__(self, raise_after: int = 2, clear_after: int = 3) -> None:
        self.counters: dict[AlertKey, AlertCounter] = {}
        self.raise_after = raise_after
        self.clear_after = clear_after

    def evaluate(self, *findings: Finding) -> list[Transition]:
        self.counters, transitions = step(
            self.counters,
            findings,
            raise_after=self.raise_after,
            clear_after=self.clear_after,
        )
        return transitions


def changes(transitions: Iterable[Transition]) -> list[tuple[str, str, int]]:
    return [(t.change, t.finding.rule, t.evaluations) for t in transitions]


def test_raised_only_after_raise_after_evaluations_in_a_row() -> None:
    alerts = Alerts(raise_after=3)
    assert alerts.evaluate(LOW) == []
    assert alerts.evaluate(LOW) == []
    raised = alerts.evaluate(LOW)
    assert changes(raised) == [("raised", "battery_low", 3)]
    assert raised[0].finding.detail == {"battery_v": 3.3}
    assert alerts.evaluate(LOW) == []  # raised once, not every evaluation


def test_an_interrupted_finding_starts_counting_again() -> None:
    alerts = Alerts(raise_after=2)
    assert alerts.evaluate(LOW) == []
    assert alerts.evaluate() == []
    assert alerts.evaluate(LOW) == []
    assert alerts.counters == {LOW.key: AlertCounter(LOW, raised=False, seen=1)}
    assert changes(alerts.evaluate(LOW)) == [("raised", "battery_low", 2)]


def test_cleared_only_after_clear_after_evaluations_without_it() -> None:
    alerts = Alerts(raise_after=1, clear_after=3)
    assert changes(alerts.evaluate(LOW)) == [("raised", "battery_low", 1)]
    assert alerts.evaluate() == []
    assert alerts.evaluate() == []
    lower = Finding("battery_low", "b1", "board", "warning", {"battery_v": 3.1})
    assert alerts.evaluate(lower) == []  # back before it cleared: absence counts again
    assert alerts.evaluate() == []
    assert alerts.evaluate() == []
    cleared = alerts.evaluate()
    assert changes(cleared) == [("cleared", "battery_low", 3)]
    assert cleared[0].finding.detail == {"battery_v": 3.1}  # the last finding's numbers
    assert alerts.counters == {}


def test_each_rule_and_subject_counts_apart() -> None:
    alerts = Alerts(raise_after=2, clear_after=1)
    other_board = Finding("battery_low", "b2", "board", "warning", {"battery_v": 3.2})
    assert alerts.evaluate(LOW, HEAP) == []
    assert changes(alerts.evaluate(LOW, other_board)) == [("raised", "battery_low", 2)]
    assert set(alerts.counters) == {LOW.key, other_board.key}
    assert changes(alerts.evaluate(other_board)) == [
        ("raised", "battery_low", 2),
        ("cleared", "battery_low", 1),
    ]


def test_a_finding_named_twice_in_one_evaluation_counts_once() -> None:
    alerts = Alerts(raise_after=2)
    assert alerts.evaluate(LOW, LOW) == []


def test_counters_survive_json_as_the_store_keeps_them() -> None:
    alerts = Alerts(raise_after=1, clear_after=2)
    alerts.evaluate(LOW, HEAP)
    alerts.evaluate(LOW)
    stored = json.loads(json.dumps([c.to_json() for c in alerts.counters.values()]))
    restored = {c.finding.key: c for c in map(AlertCounter.from_json, stored)}
    assert restored == alerts.counters


def test_thresholds_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        step({}, [LOW], raise_after=0, clear_after=1)
