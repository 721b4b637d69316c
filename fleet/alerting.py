"""The health rules run over fleet.db: inputs built from what the fleet recorded, alerts raised
and cleared in fleet.db (each change audited), old health history pruned.

``fleet.health`` is pure; this module is its one user that reads and writes: every
``every_s`` seconds :meth:`Alerting.evaluate` builds each board's and gateway's view, runs
:func:`fleet.health.evaluate`, steps the hysteresis and records the transitions. The
hysteresis counters live in memory and start from the open alerts after a restart, so an
open alert is neither raised twice nor forgotten.

A board's cycle (the unit of ``stale``) is learnt from the gaps between its health
reports (their median); until it has two, the ``board_cycle_s`` setting is used.
"""

from __future__ import annotations

import itertools
import statistics
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Final

from fleet import health
from fleet.health import AlertCounter, AlertKey, Finding, Thresholds, Transition
from fleet.records import Board, ReadingSummary
from fleet.store import FleetStore

#: Who the alert changes are audited as.
RULES_OPERATOR: Final = "fleet-rules"
DEFAULT_CYCLE_S: Final = 60.0
#: Health history kept in fleet.db (the longest rule window is a few hours).
DEFAULT_RETENTION_S: Final = 7 * 86_400
#: Gateway backlog samples kept per gateway for ``backlog_growing``.
_BACKLOG_SAMPLES: Final = 32


class Alerting:
    """Runs the rules over one fleet.db."""

    def __init__(self, store: FleetStore) -> None:
        self.store = store
        self.counters: dict[AlertKey, AlertCounter] = {}
        for alert in store.open_alerts():
            if alert.subject_kind == "gateway":
                finding = Finding(alert.rule, alert.subject, "gateway", "warning", alert.detail)
            else:
                finding = Finding(alert.rule, alert.subject, "board", "warning", alert.detail)
            self.counters[finding.key] = AlertCounter(finding, raised=True)
        self.backlogs: dict[str, deque[health.BacklogSample]] = {}
        #: Each board's recent health, parsed once: read from fleet.db as it is added.
        self._history: dict[str, deque[health.HealthSample]] = {}
        self._history_rowid = 0
        self.evaluations = 0
        self.last_ms: float = 0.0

    def thresholds(self) -> Thresholds:
        return Thresholds.from_json(self.store.setting("health.thresholds", {}) or {})

    def note_gateway_state(self, gateway_id: str, at_ms: int, state: Mapping[str, Any]) -> None:
        """Keep the backlog of a gateway's verified state (``backlog_growing`` needs a few)."""
        backlog = (state.get("health") or {}).get("backlog")
        if type(backlog) is int:
            samples = self.backlogs.setdefault(gateway_id, deque(maxlen=_BACKLOG_SAMPLES))
            samples.append(health.BacklogSample(at_ms, backlog))

    def evaluate(
        self, now_ms: int, states: Mapping[str, Mapping[str, Any] | None]
    ) -> list[Transition]:
        """One evaluation: findings, hysteresis, alerts in fleet.db; the transitions.

        ``states``: each gateway's last verified state message (None: not heard)."""
        thresholds = self.thresholds()
        window_ms = int(max(thresholds.drain_window_s, thresholds.reboot_window_s) * 1000)
        history = self._recent_health(now_ms - 2 * window_ms)
        summaries: dict[str, list[ReadingSummary]] = {}
        for summary in self.store.summaries():
            summaries.setdefault(summary.board_id, []).append(summary)
        default_cycle = float(self.store.setting("board_cycle_s", DEFAULT_CYCLE_S) or 60.0)
        boards = [
            _board_health(
                b, history.get(b.board_id, ()), summaries.get(b.board_id, []), default_cycle
            )
            for b in self.store.boards()
        ]
        gateways = [
            self._gateway_health(g.gateway_id, g.site_id, states.get(g.gateway_id))
            for g in self.store.gateways()
            if g.retired_ms is None
        ]
        findings = health.evaluate(boards, gateways, thresholds, now_ms)
        self.counters, transitions = health.step(
            self.counters,
            findings,
            raise_after=thresholds.alert_raise_after,
            clear_after=thresholds.alert_clear_after,
        )
        with self.store.transaction():  # one commit for a storm of transitions
            for transition in transitions:
                self._record(transition)
        self.store.prune_history(
            now_ms - int(self.store.setting("health_retention_s", DEFAULT_RETENTION_S) or 0) * 1000
        )
        self.evaluations += 1
        return transitions

    def _recent_health(self, since_ms: int) -> dict[str, deque[health.HealthSample]]:
        """Every board's health reports since ``since_ms``, oldest first: the new rows of
        fleet.db parsed and added to what was read before, the old ones let go."""
        self._history_rowid, added = self.store.health_added(self._history_rowid, since_ms=since_ms)
        for row in added:
            samples = self._history.setdefault(row.board_id, deque())
            sample = health.HealthSample.from_report(row.at_ms, row.health)
            if samples and sample.at_ms < samples[-1].at_ms:  # late: keep them in time order
                samples.append(sample)
                ordered = sorted(samples, key=lambda s: s.at_ms)
                samples.clear()
                samples.extend(ordered)
            else:
                samples.append(sample)
        for board in list(self._history):
            samples = self._history[board]
            while samples and samples[0].at_ms < since_ms:
                samples.popleft()
            if not samples:
                del self._history[board]
        return self._history

    def _record(self, transition: Transition) -> None:
        f = transition.finding
        target = f"{f.rule}:{f.subject}"
        with self.store.transaction():
            if transition.change == "raised":
                self.store.raise_alert(f.rule, f.subject, f.subject_kind, dict(f.detail))
            else:
                self.store.clear_alert(f.rule, f.subject)
            self.store.append_audit(
                RULES_OPERATOR,
                f"alert.{transition.change}",
                target,
                {"severity": f.severity, **dict(f.detail)},
                "ok",
            )

    def _gateway_health(
        self, gateway_id: str, site: str, state: Mapping[str, Any] | None
    ) -> health.GatewayHealth:
        if state is None:
            return health.GatewayHealth(gateway_id, site, 30.0, None)
        gw = state.get("health") if isinstance(state.get("health"), dict) else {}
        assert isinstance(gw, dict)
        uplinks = {
            str(name): health.UplinkState(
                bool(u.get("up")), _int(u.get("delivered")) or 0, _int(u.get("lag")) or 0
            )
            for name, u in (gw.get("uplinks") or {}).items()
            if isinstance(u, dict)
        }
        interval = (gw.get("control") or {}).get("state_interval_s", 30)
        security = gw.get("security") if isinstance(gw.get("security"), dict) else {}
        assert isinstance(security, dict)
        refused = security.get("refused") if isinstance(security.get("refused"), dict) else {}
        assert isinstance(refused, dict)
        return health.GatewayHealth(
            gateway_id,
            site,
            float(interval) if isinstance(interval, int | float) else 30.0,
            _int(state.get("at")),
            disk_free=_int(gw.get("disk_free")),
            disk_total=_int(gw.get("disk_total")),
            backlog=tuple(self.backlogs.get(gateway_id, ())),
            uplinks=uplinks,
            plain_coap=security.get("plain_coap") is True,
            refused={str(k): v for k, v in refused.items() if type(v) is int},
        )


def _board_health(
    board: Board,
    history: Iterable[health.HealthSample],
    summaries: list[ReadingSummary],
    default_cycle: float,
) -> health.BoardHealth:
    samples = tuple(history)
    gaps = [b.at_ms - a.at_ms for a, b in itertools.pairwise(samples)]
    cycle = statistics.median(gaps) / 1000 if gaps else default_cycle
    return health.BoardHealth(
        board_id=board.board_id,
        kind=board.kind,
        site=board.site_id,
        gateway=board.gateway_id,
        cycle_s=max(cycle, 0.1),
        last_seen_ms=board.last_seen_ms,
        health=samples,
        baselines={s.quantity: baseline(s) for s in summaries},
        latest={s.quantity: s.last_value for s in summaries},
    )


def baseline(summary: ReadingSummary) -> health.Baseline:
    return health.Baseline(summary.count, summary.mean, summary.m2, summary.min, summary.max)


def _int(value: object) -> int | None:
    return value if type(value) is int else None


__all__ = ["Alerting", "baseline"]
