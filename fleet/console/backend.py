"""What the console reads of the fleet: :class:`FleetBackend`, and :class:`StoreBackend` over
fleet.db.

The app calls a backend only from ``@work(thread=True)`` workers, so its methods are plain
synchronous calls that may block (a busy database, a remote fleet). What comes back is a
:class:`FleetSnapshot` or a :class:`BoardDetail`, frozen values all the way down, so the UI
thread never touches the store: it only compares them.

Actions (reboot, fetch a log, tag, retire) return one line saying what was done, or raise
:class:`~fleet.errors.FleetError` / ``ValueError`` with the reason the fleet refused.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from fleet import audit as fleet_audit
from fleet import commands, inventory
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
from fleet.errors import FleetError, NotFound
from fleet.health.quantities import QUANTITIES
from fleet.inventory import audited_change
from fleet.link import BrokerSettings
from fleet.records import Alert, Board, Gateway, HealthSample, Json, ReadingBucket
from fleet.store import DB_NAME, FleetStore, now_ms

#: A day in ms: "today" starts at 00:00 UTC.
DAY_MS: Final = 86_400_000
#: How long fetching a log waits for the gateway's reply (s).
LOG_WAIT_S: Final = 10.0
#: The health fields the Board screen draws: (name in the report, unit).
HEALTH_FIELDS: Final = (("battery", "V"), ("rssi", "dBm"), ("heap_free", "B"), ("boot_count", ""))
#: Alerts of a board shown: the open ones and the newest cleared, this many in all.
BOARD_ALERTS: Final = 20
NO_BROKER: Final = "no broker: start the console with --broker HOST:PORT to send commands"


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
    #: Readings fleet.db received that were taken since 00:00 UTC today.
    readings_today: int
    #: The releases the fleet holds, as ``(seq, version)``, newest first.
    releases: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ReadingSeries:
    """One quantity of a board in history buckets, oldest first: each bucket's start (Unix
    ms), how many readings it holds, and their mean, min and max, in ``unit``."""

    quantity: str
    unit: str
    starts_ms: tuple[int, ...]
    counts: tuple[int, ...]
    means: tuple[float, ...]
    lows: tuple[float, ...]
    highs: tuple[float, ...]

    @property
    def mean(self) -> float | None:
        """The mean of every reading in the series (``None``: none)."""
        total = sum(self.counts)
        if not total:
            return None
        return sum(n * m for n, m in zip(self.counts, self.means, strict=True)) / total


@dataclass(frozen=True, slots=True)
class HealthSeries:
    """One field of a board's health reports, oldest first (reports without it skipped)."""

    name: str
    unit: str
    times_ms: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class LatestReading:
    quantity: str
    value: float
    at_ms: int


@dataclass(frozen=True, slots=True)
class RolloutStep:
    """The board in one rollout: the release it brought, its wave and status there."""

    rollout_id: str
    release: int
    rollout_state: str
    wave: int
    status: str
    updated_ms: int


@dataclass(frozen=True, slots=True)
class BoardDetail:
    """One board as the Board screen shows it: its row, history since the time asked for,
    the latest value of each quantity, its rollouts (latest first), its alerts (newest
    first) and its site's flood alert levels (metres by ``siaga4`` .. ``siaga1``)."""

    board: BoardRow
    #: The release it should run outside a rollout (0: none set).
    desired: int
    ota_detail: str | None
    retired_ms: int | None
    readings: tuple[ReadingSeries, ...]
    health: tuple[HealthSeries, ...]
    latest: tuple[LatestReading, ...]
    rollouts: tuple[RolloutStep, ...]
    alerts: tuple[AlertRow, ...]
    flood_levels: tuple[tuple[str, float], ...]


class FleetBackend(Protocol):
    """What the console needs of a fleet. Methods may block; call them from a worker."""

    def snapshot(self) -> FleetSnapshot:
        """Sites, gateways (active, or with boards enrolled) and enrolled boards with their
        last health and state; open alerts and running rollouts counted."""
        ...

    def board_detail(self, board_id: str, since_ms: int) -> BoardDetail:
        """One board (retired ones too) with its history since ``since_ms``; raises
        :class:`~fleet.errors.NotFound` for a board never enrolled."""
        ...

    def reboot_board(self, board_id: str) -> str:
        """Ask its gateway to restart the board at its next contact (no wait for it)."""
        ...

    def fetch_log(self, board_id: str) -> str:
        """What the board's gateway has of it (health, OTA, recent events), as text."""
        ...

    def tag_board(self, board_id: str, add: Sequence[str], remove: Sequence[str]) -> str:
        """Add and remove tags of a board."""
        ...

    def retire_board(self, board_id: str) -> str:
        """Retire a board: it leaves listings and desired documents, its record stays."""
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


def day_start(at_ms: int) -> int:
    """00:00 UTC of the day ``at_ms`` is in."""
    return at_ms - at_ms % DAY_MS


def reading_series(buckets: Iterable[ReadingBucket]) -> tuple[ReadingSeries, ...]:
    """Buckets (by quantity, then time, as the store gives them) as one series a quantity."""
    grouped: dict[str, list[ReadingBucket]] = {}
    for bucket in buckets:
        grouped.setdefault(bucket.quantity, []).append(bucket)
    return tuple(
        ReadingSeries(
            quantity,
            QUANTITIES[quantity].unit if quantity in QUANTITIES else "",
            tuple(b.start_ms for b in rows),
            tuple(b.count for b in rows),
            tuple(b.mean for b in rows),
            tuple(b.min for b in rows),
            tuple(b.max for b in rows),
        )
        for quantity, rows in sorted(grouped.items())
    )


def health_series(samples: Sequence[HealthSample]) -> tuple[HealthSeries, ...]:
    """The fields of :data:`HEALTH_FIELDS` of health reports (oldest first), one series each."""
    series = []
    for name, unit in HEALTH_FIELDS:
        points = [(s.at_ms, _number(s.health.get(name))) for s in samples]
        kept = [(at, v) for at, v in points if v is not None]
        series.append(
            HealthSeries(name, unit, tuple(at for at, _ in kept), tuple(v for _, v in kept))
        )
    return tuple(series)


def log_text(result: Mapping[str, Any]) -> str:
    """A gateway's ``log`` reply for one board (``gateway.control.apply``), for people."""
    lines = [f"board {result.get('board')} · known to its gateway: {bool(result.get('known'))}"]
    lines.append(f"last seen {_utc(result.get('last_seen_ms'))}")
    health = result.get("health")
    if isinstance(health, Mapping):
        lines.append(f"health at {_utc(result.get('health_ms'))}:")
        lines.extend(f"  {key}: {_json(value)}" for key, value in sorted(health.items()))
    ota = result.get("ota")
    if isinstance(ota, Mapping):
        lines.append(
            f"OTA: runs {ota.get('running')}, {ota.get('state')}"
            f" ({ota.get('detail') or 'no detail'}) at {_utc(ota.get('at'))}"
        )
    events = result.get("events")
    if isinstance(events, list) and events:
        lines.append(f"events, oldest first ({len(events)}):")
        for event in events:
            if isinstance(event, Mapping):
                lines.append(
                    f"  {_utc(event.get('at'))}  {event.get('kind')}  {_json(event.get('detail'))}"
                )
    else:
        lines.append("no events")
    return "\n".join(lines)


def _utc(ms: object) -> str:
    if not isinstance(ms, int) or isinstance(ms, bool):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ms / 1000))


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


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
    ``operator`` (as the CLI's, by :func:`fleet.inventory.audited_change`); commands to
    gateways (reboot, log) are signed with the fleet directory's operator key and go through
    ``broker``, and without one they are refused with the reason. ``clock`` (Unix ms) says
    when today began.
    """

    def __init__(
        self,
        fleet_dir: Path,
        *,
        operator: str,
        broker: BrokerSettings | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.fleet_dir = fleet_dir
        self.path = fleet_dir / DB_NAME
        self.operator = operator
        self.broker = broker
        self.clock = clock
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
        with store.reads():
            return self._snapshot(store)

    def _snapshot(self, store: FleetStore) -> FleetSnapshot:
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
            readings_today=store.readings_since(day_start(self.clock())),
            releases=tuple(
                (r.seq, r.version) for r in sorted(store.releases(), key=lambda r: -r.seq)
            ),
        )

    # --- rollouts, alerts, audit (the Rollouts, Alerts and Audit screens) ---------------------

    def rollouts(self) -> tuple[RolloutView, ...]:
        store = self._store()
        with store.reads():
            running = {b.board_id: b.running for b in store.boards()}
            return tuple(
                rollout_view(r, store.rollout_boards(r.id), running) for r in store.rollouts()
            )

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
        with store.reads():
            return alerts_view(
                self._alert_rows(store, store.open_alerts()),
                self._alert_rows(store, store.recent_alerts(limit=recent_limit)),
            )

    @staticmethod
    def _alert_rows(store: FleetStore, alerts: list[Alert]) -> tuple[AlertRow, ...]:
        """The alerts with the severity each was raised with."""
        severity = store.raised_severities(sorted({f"{a.rule}:{a.subject}" for a in alerts}))
        return tuple(alert_row(a, severity.get(f"{a.rule}:{a.subject}", "warning")) for a in alerts)

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

    # --- a board (the Board screen) -----------------------------------------------------------

    def board_detail(self, board_id: str, since_ms: int) -> BoardDetail:
        store = self._store()
        with store.reads():
            return self._board_detail(store, board_id, since_ms)

    def _board_detail(self, store: FleetStore, board_id: str, since_ms: int) -> BoardDetail:
        board = store.board(board_id)
        if board is None:
            raise NotFound(f"unknown board {board_id!r}")
        site = store.site(board.site_id)
        steps = []
        for entry in store.board_rollouts(board_id):
            rollout = store.rollout(entry.rollout_id)
            if rollout is not None:
                steps.append(
                    RolloutStep(
                        entry.rollout_id,
                        rollout.release,
                        rollout.state,
                        entry.wave,
                        entry.status,
                        entry.updated_ms,
                    )
                )
        return BoardDetail(
            board=board_row(board),
            desired=board.desired,
            ota_detail=board.ota_detail,
            retired_ms=board.retired_ms,
            readings=reading_series(store.reading_history(board_id, since_ms=since_ms)),
            health=health_series(store.health_history(board_id, since_ms=since_ms)),
            latest=tuple(
                LatestReading(s.quantity, s.last_value, s.last_ms)
                for s in store.summaries(board_id)
            ),
            rollouts=tuple(steps),
            alerts=self._alert_rows(
                store, store.recent_alerts(subject=board_id, limit=BOARD_ALERTS)
            ),
            flood_levels=tuple(sorted((site.flood_levels or {}).items()) if site else ()),
        )

    def _enrolled(self, board_id: str) -> Board:
        board = self._store().board(board_id)
        if board is None:
            raise NotFound(f"unknown board {board_id!r}")
        if board.retired_ms is not None:
            raise FleetError(f"board {board_id} is retired")
        return board

    def _command(self, board: Board, action: str, wait_s: float) -> dict[str, Any] | None:
        if self.broker is None:
            raise FleetError(NO_BROKER)
        return commands.send(
            self.fleet_dir,
            self._store(),
            self.broker,
            board.gateway_id,
            action,
            board=board.board_id,
            wait_s=wait_s,
            operator=self.operator,
        )

    def reboot_board(self, board_id: str) -> str:
        board = self._enrolled(board_id)
        # The gateway replies only once the board has booted again: no waiting for that.
        self._command(board, "reboot", 0)
        return (
            f"reboot of {board_id} sent to gateway {board.gateway_id}:"
            " it restarts at its next contact"
        )

    def fetch_log(self, board_id: str) -> str:
        board = self._enrolled(board_id)
        reply = self._command(board, "log", LOG_WAIT_S)
        if reply is None:
            raise FleetError(
                f"no reply from gateway {board.gateway_id} within {LOG_WAIT_S:g} s"
                " (it may be offline; the command stays valid for an hour)"
            )
        if not reply.get("ok"):
            raise FleetError(f"gateway {board.gateway_id}: {reply.get('error')}")
        result = reply.get("result")
        return log_text(result if isinstance(result, Mapping) else {})

    def tag_board(self, board_id: str, add: Sequence[str], remove: Sequence[str]) -> str:
        adding, removing = sorted(set(add)), sorted(set(remove))
        if not adding and not removing:
            raise ValueError("no tags to change: write +tag to add one, -tag to remove one")
        store = self._store()
        board = self._enrolled(board_id)
        if adding:
            board = audited_change(
                store, self.operator, "board.tag", board_id, {"tags": adding},
                lambda s: s.tag_board(board_id, adding),
            )  # fmt: skip
        if removing:
            board = audited_change(
                store, self.operator, "board.untag", board_id, {"tags": removing},
                lambda s: s.untag_board(board_id, removing),
            )  # fmt: skip
        return f"board {board_id} tags: {', '.join(board.tags) or 'none'}"

    def retire_board(self, board_id: str) -> str:
        audited_change(
            self._store(), self.operator, "board.retire", board_id, {},
            lambda s: s.retire_board(board_id),
        )  # fmt: skip
        return f"board {board_id} retired"

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for store in opened:
            store.close()
