"""What the console reads of the fleet: :class:`FleetBackend`, and :class:`StoreBackend` over
fleet.db.

The app calls a backend only from ``@work(thread=True)`` workers, so its methods are plain
synchronous calls that may block (a busy database, a remote fleet). What comes back is a
:class:`FleetSnapshot`, frozen values all the way down, so the UI thread never touches the
store: it only compares snapshots.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from fleet import audit as fleet_audit
from fleet import inventory
from fleet import operations as rollout_ops
from fleet.console.operations import (
    AlertRow,
    AlertsView,
    AuditView,
    RolloutView,
    alert_row,
    alerts_view,
    newest_matching,
    rollout_view,
)
from fleet.link import BrokerSettings
from fleet.records import Alert, Board, Gateway, Json
from fleet.store import DB_NAME, FleetStore


@dataclass(frozen=True, slots=True)
class SiteRow:
    site_id: str
    name: str


@dataclass(frozen=True, slots=True)
class GatewayRow:
    gateway_id: str
    site_id: str
    #: When its newest verified state was taken (``None``: never).
    last_state_ms: int | None
    #: Readings not yet in a delivered batch, from that state (``None``: not reported).
    backlog: int | None
    #: Retired gateways are listed only for the boards still enrolled under them.
    retired: bool = False


@dataclass(frozen=True, slots=True)
class BoardRow:
    """One enrolled board as the console shows it. Units: ``battery`` V, ``rssi`` dBm."""

    board_id: str
    kind: str
    site_id: str
    gateway_id: str
    tags: tuple[str, ...]
    #: The seq of the release it runs (0: factory application, or not reported yet).
    running: int
    #: Its OTA step as last reported (``None``: none under way).
    ota_state: str | None
    last_seen_ms: int | None
    battery: float | None
    rssi: float | None


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    """The fleet at one moment; sites, gateways and boards ordered by id."""

    sites: tuple[SiteRow, ...]
    gateways: tuple[GatewayRow, ...]
    boards: tuple[BoardRow, ...]
    open_alerts: int
    running_rollouts: int


class FleetBackend(Protocol):
    """What the console needs of a fleet. Methods may block; call them from a worker."""

    def snapshot(self) -> FleetSnapshot:
        """Sites, gateways (active, or with boards enrolled) and enrolled boards with their
        last health and state; open alerts and running rollouts counted."""
        ...

    def close(self) -> None:
        """Release what the backend holds (connections); called once, when the app ends."""
        ...

    # --- rollouts, alerts, audit (the Rollouts, Alerts and Audit screens) ---------------------
    # Actions return one line saying what they did, and raise FleetError or ValueError with
    # the reason when the fleet refuses them; each is audited under the backend's operator.

    def rollouts(self) -> tuple[RolloutView, ...]:
        """Every rollout, oldest first, with its waves' progress and why it halted."""
        ...

    def start_rollout(self, request: rollout_ops.RolloutRequest) -> str:
        """Plan a rollout and start it."""
        ...

    def pause_rollout(self, rollout_id: str) -> str:
        """Start no new wave of a running rollout."""
        ...

    def resume_rollout(self, rollout_id: str) -> str:
        """Run a paused or halted rollout on."""
        ...

    def abort_rollout(self, rollout_id: str) -> str:
        """Stop a rollout: boards that took its release go back to the revert release."""
        ...

    def alerts(self, recent_limit: int) -> AlertsView:
        """Open alerts, and at most ``recent_limit`` recently raised ones that cleared."""
        ...

    def acknowledge_alert(self, alert_id: int, note: str) -> str:
        """Say an alert is seen and what is being done (``note``, not empty)."""
        ...

    def audit(self, text: str | None, limit: int) -> AuditView:
        """At most ``limit`` audit entries matching ``text``, newest first, and whether the
        hash chain verifies."""
        ...


def _number(value: Json) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def board_row(board: Board) -> BoardRow:
    health: Mapping[str, Json] = board.last_health or {}
    return BoardRow(
        board_id=board.board_id,
        kind=board.kind,
        site_id=board.site_id,
        gateway_id=board.gateway_id,
        tags=board.tags,
        running=board.running,
        ota_state=board.ota_state,
        last_seen_ms=board.last_seen_ms,
        battery=_number(health.get("battery")),
        rssi=_number(health.get("rssi")),
    )


def gateway_row(gateway: Gateway) -> GatewayRow:
    backlog = (gateway.last_state or {}).get("backlog")
    return GatewayRow(
        gateway_id=gateway.gateway_id,
        site_id=gateway.site_id,
        last_state_ms=gateway.last_state_ms,
        backlog=backlog if type(backlog) is int else None,
        retired=gateway.retired_ms is not None,
    )


class StoreBackend:
    """:class:`FleetBackend` over ``<fleet_dir>/fleet.db``, which must exist.

    SQLite connections belong to the thread that opened them, so each thread that calls
    gets its own :class:`FleetStore`, opened on its first call. Changes are audited under
    ``operator``; commands to gateways (reboot, log) go through ``broker``, and without one
    they are refused with the reason.
    """

    def __init__(
        self, fleet_dir: Path, *, operator: str, broker: BrokerSettings | None = None
    ) -> None:
        self.fleet_dir = fleet_dir
        self.path = fleet_dir / DB_NAME
        self.operator = operator
        self.broker = broker
        self._local = threading.local()
        self._opened: list[FleetStore] = []
        self._lock = threading.Lock()

    def _store(self) -> FleetStore:
        store: FleetStore | None = getattr(self._local, "store", None)
        if store is None:
            store = FleetStore(self.path, create=False)
            self._local.store = store
            with self._lock:
                self._opened.append(store)
        return store

    def snapshot(self) -> FleetSnapshot:
        store = self._store()
        status = store.status()
        boards = tuple(board_row(b) for b in store.boards())
        with_boards = {b.gateway_id for b in boards}
        gateways = tuple(
            gateway_row(g)
            for g in store.gateways()
            if g.retired_ms is None or g.gateway_id in with_boards
        )
        return FleetSnapshot(
            sites=tuple(SiteRow(s.site_id, s.name) for s in store.sites()),
            gateways=gateways,
            boards=boards,
            open_alerts=status.open_alerts,
            running_rollouts=len(store.rollouts(states=("running",))),
        )

    # --- rollouts, alerts, audit (the Rollouts, Alerts and Audit screens) ---------------------

    def rollouts(self) -> tuple[RolloutView, ...]:
        store = self._store()
        running = {b.board_id: b.running for b in store.boards()}
        return tuple(rollout_view(r, store.rollout_boards(r.id), running) for r in store.rollouts())

    def start_rollout(self, request: rollout_ops.RolloutRequest) -> str:
        rollout = rollout_ops.start_rollout(
            self._store(), self.fleet_dir, request, operator=self.operator
        )
        waves = rollout.plan["waves"] if isinstance(rollout.plan, dict) else []
        boards = sum(len(w) for w in waves)
        return (
            f"rollout {rollout.id} started: release {rollout.release} to {boards} boards"
            f" in {len(waves)} waves"
        )

    def pause_rollout(self, rollout_id: str) -> str:
        rollout_ops.pause_rollout(self._store(), rollout_id, operator=self.operator)
        return f"rollout {rollout_id} paused: no new wave starts"

    def resume_rollout(self, rollout_id: str) -> str:
        rollout_ops.resume_rollout(self._store(), rollout_id, operator=self.operator)
        return f"rollout {rollout_id} runs on"

    def abort_rollout(self, rollout_id: str) -> str:
        rollout = rollout_ops.abort_rollout(self._store(), rollout_id, operator=self.operator)
        if rollout.revert:
            return (
                f"rollout {rollout_id} aborted: boards that took release {rollout.release}"
                f" go back to release {rollout.revert}"
            )
        return f"rollout {rollout_id} aborted: boards keep what they run"

    def alerts(self, recent_limit: int) -> AlertsView:
        store = self._store()
        opened = store.open_alerts()
        recent = store.recent_alerts(limit=recent_limit)
        severity = store.raised_severities(
            sorted({f"{a.rule}:{a.subject}" for a in (*opened, *recent)})
        )

        def rows(alerts: list[Alert]) -> list[AlertRow]:
            return [alert_row(a, severity.get(f"{a.rule}:{a.subject}", "warning")) for a in alerts]

        return alerts_view(rows(opened), rows(recent))

    def acknowledge_alert(self, alert_id: int, note: str) -> str:
        alert = inventory.acknowledge_alert(self._store(), alert_id, note, operator=self.operator)
        return f"alert {alert.id} ({alert.rule} on {alert.subject}) acknowledged by {self.operator}"

    def audit(self, text: str | None, limit: int) -> AuditView:
        entries, head = self._store().audit_log()
        problems = fleet_audit.verify(entries, head)
        return AuditView(
            entries=newest_matching(entries, text, limit),
            total=len(entries),
            intact=not problems,
            problems=tuple(p.message for p in problems),
        )

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for store in opened:
            store.close()
