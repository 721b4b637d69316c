"""The fleet manager's engine: what ``simpul fleet serve`` does each cycle.

It takes in what gateways publish, each message verified with that gateway's key
(:func:`gateway.control.messages.verify_up`; batches with the batch verifier), records it in
fleet.db (``fleet.store``), judges health (``fleet.health``) and rollouts
(``fleet.rollouts``), and publishes each gateway's desired-state document, signed with the
operator key, whenever what the fleet wants of that gateway changed.

The engine holds no state that matters across a restart: fleet.db has the inventory,
rollouts, alerts and the last document per gateway; the gateways' retained state messages
come again when it reconnects. What a gateway reported last is kept in memory only (its
latest ``state``), bounded by the number of gateways.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import cbor2

from fleet import health, rollouts
from fleet import keys as fleet_keys
from fleet.alerting import Alerting, baseline
from fleet.link import FleetLink, Incoming
from fleet.records import Board, BoardReport, Gateway, Rollout
from fleet.store import FleetStore
from gateway.batches.verify import ChainVerifier, KeySet
from gateway.codec import cose
from gateway.control import messages, topics
from gateway.control.messages import (
    BoardEntry,
    ControlRefused,
    Desired,
    Limits,
    RolloutPlan,
    Wave,
)
from gateway.oscore import seal
from gateway.oscore.keys import encode_board_file

log = logging.getLogger(__name__)

#: Who the engine's own actions are audited as.
ENGINE_OPERATOR: Final = "fleet-engine"
#: Events kept in memory for ``status`` and the console (the newest).
MAX_EVENTS: Final = 1000
#: How far back the "before" of a board's worse-after check reaches.
_BEFORE_MS: Final = 6 * 3_600_000
#: Batches whose digests a chain keeps to place a late or repeated batch.
_CHAIN_MEMORY: Final = 256


@dataclass(slots=True)
class GatewayView:
    """What the fleet last heard from one gateway (verified)."""

    state: dict[str, Any] | None = None
    heard_ms: int = 0


class FleetEngine:
    """One fleet: its database, its operator key, its broker link (None: offline tools)."""

    def __init__(
        self,
        fleet_dir: Path,
        store: FleetStore,
        link: FleetLink | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fleet_dir = fleet_dir
        self.store = store
        self.link = link
        self.clock = clock
        self.gateways: dict[str, GatewayView] = {}
        self.refused: Counter[str] = Counter()
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self.replies: dict[bytes, dict[str, Any]] = {}
        self.readings_verified = 0
        self._chains: dict[str, ChainVerifier] = {}
        self._published_releases: set[int] = set()
        self.alerting = Alerting(store)
        self._rules_ms = 0
        #: (rollout, board) -> when the fleet saw it confirm, and its baselines then: the
        #: "before" of the fleet's own worse-after check (memory only: after a restart the
        #: check starts again from that moment).
        self._confirmed: dict[tuple[str, str], tuple[int, dict[str, health.Baseline]]] = {}

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # --- in ---------------------------------------------------------------------------------

    def handle(self, incoming: Iterable[Incoming]) -> None:
        """Verify and record what gateways published. What a gateway sends never stops the
        engine: a message that cannot be recorded is counted (``unrecordable``) and logged."""
        for message in incoming:
            try:
                self._handle(message)
            except (ValueError, TypeError, KeyError, sqlite3.Error) as exc:
                self.refused["unrecordable"] += 1
                log.warning("could not record %s from %s: %s", message.leaf, message.gateway, exc)

    def _handle(self, message: Incoming) -> None:
        gateway = self.store.gateway(message.gateway)
        if gateway is None or gateway.retired_ms is not None:
            self.refused["unknown_gateway"] += 1
            return
        if gateway.site_id != message.site:
            self.refused["wrong_site"] += 1
            return
        if message.leaf == "batches":
            self._batch(message, gateway.public_key)
            return
        try:
            payload = messages.verify_up(
                message.payload,
                {cose.key_id(gateway.public_key): gateway.public_key},
                site=message.site,
                gateway=message.gateway,
            )
        except ControlRefused as exc:
            self.refused[exc.why] += 1
            log.warning("refused %s from %s: %s", message.leaf, message.gateway, exc)
            return
        if payload["type"] == "state" and message.leaf == topics.STATE:
            self._state(message.gateway, payload)
        elif payload["type"] == "events" and message.leaf == topics.EVENTS:
            for event in payload.get("events") or ():
                if isinstance(event, dict):
                    self.events.append({**event, "gateway": message.gateway})
        elif payload["type"] == "reply" and message.leaf == topics.REPLIES:
            nonce = payload.get("id")
            if isinstance(nonce, bytes):
                self.replies[nonce] = payload
                while len(self.replies) > MAX_EVENTS:
                    self.replies.pop(next(iter(self.replies)))
        else:
            self.refused["wrong_topic"] += 1

    def _state(self, gateway_id: str, payload: dict[str, Any]) -> None:
        seq, at = payload.get("seq"), payload.get("at")
        if type(seq) is not int or type(at) is not int:
            self.refused["malformed"] += 1
            return
        reports = []
        boards = payload.get("boards")
        for board_id, report in (boards if isinstance(boards, dict) else {}).items():
            if isinstance(board_id, str) and isinstance(report, dict):
                reports.append(_board_report(board_id, report))
        health = payload.get("health")
        seal_key = payload.get("seal_key")
        self.store.record_state(
            gateway_id,
            seq=seq,
            at_ms=at,
            health=health if isinstance(health, dict) else {},
            boards=reports,
            seal_key=seal_key if isinstance(seal_key, bytes) and len(seal_key) == 32 else None,
        )
        view = self.gateways.setdefault(gateway_id, GatewayView())
        if view.state is None or int(view.state.get("seq", -1)) < seq:
            view.state, view.heard_ms = payload, self.now_ms()
            self.alerting.note_gateway_state(gateway_id, at, payload)

    def _batch(self, message: Incoming, public_key: bytes) -> None:
        chain = self._chains.get(message.gateway)
        if chain is None:
            keyset = KeySet()
            keyset.add(public_key)
            chain = self._chains[message.gateway] = ChainVerifier(keyset, join=True)
        outcome = chain.feed(message.payload)
        failures = [p for p in outcome.problems if p.is_failure]
        if failures or outcome.batch is None:
            for problem in failures:
                self.refused[f"batch_{problem.kind}"] += 1
            return
        if outcome.batch.gateway != message.gateway:
            self.refused["batch_wrong_gateway"] += 1
            return
        per_board: dict[str, list[tuple[str, float, int]]] = {}
        for reading in outcome.readings:
            value = reading.value
            if (
                reading.kind == "v"
                and isinstance(value, int | float)
                and not isinstance(value, bool)
            ):
                per_board.setdefault(reading.board_id, []).append(
                    (reading.name, float(value), reading.time_ms)
                )
        with self.store.transaction():  # one commit per batch, not per board
            for board_id, values in per_board.items():
                self.store.add_readings(board_id, values)
        self.readings_verified += len(outcome.readings)
        _forget_old_batches(chain, message.gateway)

    # --- each cycle -------------------------------------------------------------------------

    def tick(self) -> list[str]:
        """Judge the rollouts, run the health rules when due, then publish what changed;
        the gateways published to."""
        for rollout in self.store.rollouts(states=rollouts.IN_FORCE):
            self._judge_rollout(rollout)  # an aborted one: its boards' statuses only
        now = self.now_ms()
        every_ms = int(float(self.store.setting("rules_every_s", 30) or 30) * 1000)
        if now - self._rules_ms >= every_ms:
            self._rules_ms = now
            self.alerting.evaluate(now, {g: v.state for g, v in self.gateways.items()})
        return self.publish()

    def _reports(self, rollout_id: str) -> dict[str, dict[str, Any] | None]:
        found: dict[str, dict[str, Any] | None] = {}
        for gateway_id, view in self.gateways.items():
            report = (view.state or {}).get("rollout")
            found[gateway_id] = (
                report if isinstance(report, dict) and report.get("id") == rollout_id else None
            )
        return found

    def _judge_rollout(self, rollout: Rollout) -> None:
        plan = rollout.plan
        per_gateway = _plan_waves(plan)
        heard = self._reports(rollout.id)
        reports = {g: heard.get(g) for g in per_gateway}
        statuses = rollouts.board_statuses(reports)
        if statuses:
            self.store.put_rollout_boards(
                rollout.id,
                [
                    (board, _wave_of(plan, board), str(status.get("status")))
                    for board, status in statuses.items()
                ],
            )
        reverted = [b for b, status in statuses.items() if status.get("status") == "reverted"]
        if reverted and rollout.revert:
            # What they run from now on, also once a later rollout replaces this one in the
            # gateways' documents (a board never goes back below the revert release's seq).
            self.store.set_desired_releases(reverted, rollout.revert)
        if rollout.state != "running":
            return
        halted = rollouts.halted_by(reports) or self._worse(rollout, statuses)
        if halted is not None:
            gateway_id, reason = halted
            why = f"{gateway_id}: {reason}"
            self.store.update_rollout(rollout.id, state="halted", reason=why)
            self._audit("rollout.halt", rollout.id, {"by": gateway_id, "reason": reason})
            log.warning("rollout %s halted: %s", rollout.id, why)
            return
        passed = rollouts.fleet_passed(per_gateway, reports)
        if passed > int(plan.get("passed", -1)):
            self.store.update_rollout(rollout.id, plan={**plan, "passed": passed})
            self._audit("rollout.wave_passed", rollout.id, {"wave": passed})
            if passed >= len(plan["waves"]) - 1:
                self.store.set_desired_releases(
                    [b for wave in plan["waves"] for b in wave], rollout.release
                )
                self.store.update_rollout(rollout.id, state="done", reason=None)
                self._audit("rollout.done", rollout.id, {"release": rollout.release})

    def _worse(
        self, rollout: Rollout, statuses: Mapping[str, Mapping[str, Any]]
    ) -> tuple[str, str] | None:
        """(gateway, reason) if a board's data got worse after it confirmed the release, on
        the fleet's longer view (``fleet.health.worse_after``); checked once the board has
        been on it ``silent_s``."""
        now = self.now_ms()
        limits = health.WorseLimits.from_rollout(rollout.limits)
        for board_id, status in sorted(statuses.items()):
            if status.get("status") != "confirmed":
                continue
            key = (rollout.id, board_id)
            records = self.store.summaries(board_id)
            summaries = {s.quantity: baseline(s) for s in records}
            if key not in self._confirmed:
                self._confirmed[key] = (now, summaries)
                continue
            since, before = self._confirmed[key]
            if now - since < limits.silent_s * 1000:
                continue
            board = self.store.board(board_id)
            if board is None:
                continue
            history = [
                health.HealthSample.from_report(h.at_ms, h.health)
                for h in self.store.health_history(board_id, since_ms=since - _BEFORE_MS)
            ]
            reasons = health.worse_after(
                health.Observations(
                    since - _BEFORE_MS,
                    since,
                    since,
                    tuple(h for h in history if h.at_ms < since),
                    before,
                ),
                health.Observations(
                    since,
                    now,
                    board.last_seen_ms,
                    tuple(h for h in history if h.at_ms >= since),
                    {
                        # A quantity none of whose readings was measured since the board
                        # confirmed is silent, however late the earlier ones arrive.
                        s.quantity: _after(summaries[s.quantity], before.get(s.quantity))
                        if s.last_ms >= since
                        else health.Baseline()
                        for s in records
                    },
                ),
                limits,
            )
            if reasons:
                text = "; ".join(r.message for r in reasons)
                return board.gateway_id, f"board {board_id} is worse after the update: {text}"
        return None

    # --- out --------------------------------------------------------------------------------

    def desired_for(self, gateway_id: str) -> Desired:
        """What the fleet wants of ``gateway_id`` now (seq and issued set at publishing)."""
        gateway = self.store.gateway(gateway_id)
        if gateway is None:
            raise LookupError(f"unknown gateway {gateway_id!r}")
        boards = [b for b in self.store.boards(gateway_id=gateway_id) if b.retired_ms is None]
        entries = {
            b.board_id: BoardEntry(b.kind, b.desired, self._sealed_key(gateway, b.board_id))
            for b in boards
        }
        plan = self._plan_for(gateway_id, entries)
        releases = {e.release for e in entries.values() if e.release}
        if plan is not None:
            releases |= {plan.release, plan.revert} - {0}
        config = self.store.setting(f"gateway-config/{gateway_id}", {}) or {}
        return Desired(
            site=gateway.site_id,
            gateway=gateway_id,
            seq=0,
            issued=0,
            boards=entries,
            releases=tuple(sorted(releases)),
            rollout=plan,
            config=config,
        )

    def _sealed_key(self, gateway: Gateway, board_id: str) -> bytes | None:
        """The board's OSCORE key sealed to the gateway (``gateway.oscore.seal``), sealed once
        per key and seal key so that an unchanged document keeps the same bytes; None until
        the gateway has named its seal key, or for a board with no key in fleet.db."""
        if gateway.seal_key is None:
            return None
        sealed = self.store.sealed_board_key(board_id, gateway.seal_key)
        if sealed is not None:
            return sealed
        found = self.store.board_key(board_id)
        if found is None:
            return None
        material, generation = found
        sealed = seal.seal(
            encode_board_file(material),
            gateway.seal_key,
            site=gateway.site_id,
            gateway=gateway.gateway_id,
            board_id=board_id,
        )
        self.store.keep_sealed_board_key(board_id, generation, gateway.seal_key, sealed)
        return sealed

    def _plan_for(self, gateway_id: str, entries: dict[str, BoardEntry]) -> RolloutPlan | None:
        """The newest unfinished rollout's part for this gateway; its boards' base release
        becomes what they ran before it."""
        active = self.store.rollouts(states=rollouts.IN_FORCE)
        for rollout in reversed(active):
            waves = _plan_waves(rollout.plan).get(gateway_id)
            if not waves:
                continue
            for wave in waves:
                for board in wave.boards:
                    if board in entries:
                        entries[board] = dataclasses.replace(
                            entries[board], release=int(rollout.previous.get(board, 0))
                        )
            limits = rollout.limits
            return RolloutPlan(
                id=rollout.id,
                release=rollout.release,
                revert=rollout.revert or 0,
                state=rollout.state,
                reason=rollout.reason,
                waves=waves,
                passed=int(rollout.plan.get("passed", -1)),
                window=None if rollout.window is None else tuple(rollout.window),
                limits=Limits(
                    float(limits["failures"]),
                    int(limits["confirm_s"]),
                    int(limits["silent_s"]),
                    int(limits["reboots"]),
                ),
            )
        return None

    def publish(self) -> list[str]:
        """Sign and publish each gateway's document if it changed; the gateways published."""
        if self.link is None:
            return []
        changed = []
        signer: fleet_keys.Signer | None = None
        for gateway in self.store.gateways():
            if gateway.retired_ms is not None:
                continue
            wanted = self.desired_for(gateway.gateway_id)
            last = self.store.desired(gateway.gateway_id)
            if last is not None and _same(last.doc, wanted):
                continue
            signer = signer or fleet_keys.load_operator(self.fleet_dir)
            seq = self.store.next_desired_seq(gateway.gateway_id)
            doc = Desired(
                wanted.site,
                wanted.gateway,
                seq,
                int(self.clock()),
                wanted.boards,
                wanted.releases,
                wanted.rollout,
                wanted.config,
            )
            for release in doc.releases:
                self._publish_release(release)
            sealed = messages.envelope(signer.key, signer.certificate, signer.revocations, doc)
            self.store.put_desired(gateway.gateway_id, seq, sealed)
            self.link.publish(
                topics.gateway_topic(wanted.site, wanted.gateway, topics.DESIRED),
                sealed,
                retain=True,
            )
            changed.append(gateway.gateway_id)
        return changed

    def republish(self) -> None:
        """Publish every gateway's last document and its releases again (after a start)."""
        if self.link is None:
            return
        for gateway in self.store.gateways():
            last = self.store.desired(gateway.gateway_id)
            if last is None or gateway.retired_ms is not None:
                continue
            decoded = _payload(last.doc)
            for release in decoded.get("releases", ()):
                self._publish_release(int(release))
            topic = topics.gateway_topic(gateway.site_id, gateway.gateway_id, topics.DESIRED)
            self.link.publish(topic, last.doc, retain=True)

    def _publish_release(self, seq: int) -> None:
        if self.link is None or seq in self._published_releases:
            return
        data = self.store.release_data(seq)
        if data is None:
            log.warning("release %d is named but the fleet does not hold it", seq)
            return
        self.link.publish(topics.release_topic(seq), data, retain=True)
        self._published_releases.add(seq)

    def _audit(self, action: str, target: str, detail: Mapping[str, Any]) -> None:
        self.store.append_audit(ENGINE_OPERATOR, action, target, dict(detail), "ok")


def _after(total: health.Baseline, before: health.Baseline | None) -> health.Baseline:
    """The statistics of the values added to ``before`` to make ``total`` (Chan's update
    run backwards); min and max only where the later values moved them."""
    if before is None or before.count == 0:
        return total
    count = total.count - before.count
    if count <= 0:
        return health.Baseline()
    mean = (total.count * total.mean - before.count * before.mean) / count
    delta = mean - before.mean
    m2 = max(0.0, total.m2 - before.m2 - delta * delta * before.count * count / total.count)
    low = total.min if total.min < before.min else mean
    high = total.max if total.max > before.max else mean
    return health.Baseline(count, mean, m2, min(low, mean), max(high, mean))


def _board_report(board_id: str, report: dict[str, Any]) -> BoardReport:
    ota = report.get("ota") if isinstance(report.get("ota"), dict) else {}
    health = report.get("health")
    return BoardReport(
        board_id=board_id,
        last_seen_ms=_int(report.get("last_seen_ms")) or 0,
        running=_int(report.get("running")) or 0,
        ota_state=_str(ota.get("state")) if ota else None,
        ota_detail=_str(ota.get("detail")) if ota else None,
        health=health if isinstance(health, dict) else None,
        health_ms=_int(report.get("health_ms")),
    )


def _int(value: object) -> int | None:
    return value if type(value) is int else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _plan_waves(plan: Mapping[str, Any]) -> dict[str, tuple[Wave, ...]]:
    """Each gateway's waves from a stored plan (``{"per_gateway": {gw: [[boards]]},
    "soak_s": [per wave]}``)."""
    soaks = plan.get("soak_s", 0)
    if not isinstance(soaks, list):
        soaks = [soaks]

    def soak(index: int) -> int:
        return int(soaks[min(index, len(soaks) - 1)]) if soaks else 0

    return {
        gateway: tuple(Wave(tuple(boards), soak(i)) for i, boards in enumerate(waves))
        for gateway, waves in (plan.get("per_gateway") or {}).items()
    }


def _wave_of(plan: Mapping[str, Any], board: str) -> int:
    for index, wave in enumerate(plan.get("waves") or ()):
        if board in wave:
            return index
    return -1


def _payload(sealed: bytes) -> dict[str, Any]:
    """The payload of an envelope the fleet itself signed (no check: it is ours, from
    fleet.db, and only compared)."""
    outer = cbor2.loads(sealed)
    payload: dict[str, Any] = cbor2.loads(cose.decode(outer["signed"]).payload)
    return payload


def _same(sealed: bytes, wanted: Desired) -> bool:
    """Whether the signed document ``sealed`` already says what ``wanted`` says."""
    old = _payload(sealed)
    new = wanted.payload()
    for field in ("seq", "issued"):
        old.pop(field, None)
        new.pop(field, None)
    return bool(old == new)


def _forget_old_batches(chain: ChainVerifier, gateway: str) -> None:
    """Keep the verifier's per-gateway memory bounded on a service that runs for months."""
    found = chain.chains.get(gateway)
    if found is None:
        return
    for table in (found.digests, found.prevs):
        while len(table) > _CHAIN_MEMORY:
            table.pop(min(table))


def board_refs(boards: Iterable[Board]) -> list[rollouts.BoardRef]:
    return [
        rollouts.BoardRef(b.board_id, b.site_id, b.gateway_id, b.kind, frozenset(b.tags), b.running)
        for b in boards
        if b.retired_ms is None
    ]


__all__ = ["ENGINE_OPERATOR", "FleetEngine", "GatewayView", "board_refs"]
