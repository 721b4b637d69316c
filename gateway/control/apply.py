"""What the control process does with what the fleet sends: the checks that need the
gateway's stored state, and the effects.

``gateway.control.messages`` verifies an envelope on its own (root -> operator certificate
-> revocations -> signature -> form -> addressed to this gateway); here come the checks
against ``gateway.db`` (``gateway.store.control``):

* a desired document is applied only if its seq is above the applied one; the same seq with
  the same bytes is the broker re-delivering the retained message (nothing to do); the same
  seq with other bytes is ``replayed``, a lower seq ``stale``;
* a command is refused ``expired`` after its expiry, ``too_far`` when its expiry is further
  than ``max_command_ttl_s`` ahead, ``replayed`` when its nonce was taken before.

Every refusal is counted by reason (persisted; the state message carries the counts) and
queued as a ``refused`` event. No input raises out of :class:`Controller`'s ``on_*`` methods.

Applying a document: it is stored (its envelope, so a restart verifies and acts on it
again), the releases it lists that the cache lacks are fetched by the agent (retained on
``simpul/releases/<seq>``) and added with :meth:`ReleaseCache.add`, and the per-board desired
releases become what :func:`gateway.control.reconciler.reconcile` says: the document's
own releases, and the rollout's waves as this gateway drives them.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from gateway.config import ControlConfig, GatewayConfig, load_config
from gateway.control import messages, reconciler
from gateway.errors import BadBoardKeys, ControlRefused, GatewayError, PiUnavailable, SealRefused
from gateway.oscore import seal, seal_key
from gateway.oscore.keys import BoardKey, KeyMaterial, check_unique
from gateway.ota.cache import ReleaseCache
from gateway.pi import channel
from gateway.store.board_keys import BoardKeyTable
from gateway.store.control import BoardCommand, ControlStore, Event
from gateway.store.registry import StoreReader
from gateway.store.releases import ReleaseTable
from gateway.store.schema import now_ms

log = logging.getLogger(__name__)

#: Largest desired document or command envelope taken, in bytes.
MAX_ENVELOPE_BYTES: Final = 256 * 1024
#: Config overrides a desired document may carry, and where they go.
KNOWN_OVERRIDES: Final = {
    "state_interval_s": "state_interval_s",
    "control.state_interval_s": "state_interval_s",
    "max_command_ttl_s": "max_command_ttl_s",
    "control.max_command_ttl_s": "max_command_ttl_s",
}
#: Health reports and events a ``log`` reply carries for a board at most.
_LOG_EVENTS: Final = 50


@dataclass
class Settings:
    """What the control process runs by: the config's, then the document's overrides."""

    state_interval_s: int
    max_command_ttl_s: int

    @classmethod
    def of(cls, control: ControlConfig) -> Settings:
        return cls(control.state_interval_s, control.max_command_ttl_s)


@dataclass
class Outcome:
    """What handling one message asks of the agent."""

    applied: bool = False
    replies: list[dict[str, Any]] = field(default_factory=list)


class Controller:
    """The control process's state and logic, without the broker (the agent has that)."""

    def __init__(
        self,
        config: GatewayConfig,
        root: bytes,
        *,
        store: ControlStore,
        releases: ReleaseTable,
        cache: ReleaseCache,
        reader: StoreReader,
        clock: Callable[[], float] = time.time,
        ask_pi: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.config = config
        #: Asks the daemon's GPIO (``gateway.pi.channel``): a request, its answer.
        self.ask_pi = ask_pi or functools.partial(
            channel.ask, channel.socket_path(config.state_dir)
        )
        self.root = root
        #: The key board keys are sealed to (its public part goes in the state message).
        self.seal_key = seal_key.load_or_create(config.state_dir)
        self.board_keys = BoardKeyTable(config.db_path)
        self.store = store
        self.releases = releases
        self.cache = cache
        self.reader = reader
        self.clock = clock
        self.settings = Settings.of(config.control)
        self.doc: messages.Desired | None = None
        self.doc_seq = 0
        #: The rollout part of the state message (None: no rollout).
        self.rollout_report: dict[str, Any] | None = None

    def now(self) -> int:
        return int(self.clock())

    # -- the stored document --------------------------------------------------------------

    def resume(self) -> None:
        """Act on the stored document (after a restart, or with no broker at all).

        It verified when it was applied; it is verified again as of then (its operator
        certificate may have expired since, which does not undo what it asked)."""
        stored = self.store.desired()
        if stored is None:
            return
        try:
            verified = messages.verify_envelope(
                stored.encoded,
                self.root,
                now=stored.applied_ms // 1000,
                revocations_seen=0,
                site=self.config.site,
                gateway=self.config.gateway_id,
            )
            doc = verified.message
            if not isinstance(doc, messages.Desired):
                raise TypeError("not a desired document")
        except Exception as exc:  # a root key changed since: the document no longer holds
            log.warning("stored desired document %d no longer verifies: %s", stored.seq, exc)
            return
        try:
            self._enrol(doc, self._open_keys(doc))
        except ControlRefused as exc:  # the seal key changed since: keep the enrolled keys
            log.warning("stored desired document %d: %s", stored.seq, exc)
        self._use(doc, stored.seq)
        self.reconcile()

    # -- desired documents ----------------------------------------------------------------

    def on_desired(self, data: bytes) -> Outcome:
        """A message on ``desired``: verified, checked against the applied seq, applied."""
        try:
            verified = self._verify(data)
            doc = verified.message
            if not isinstance(doc, messages.Desired):
                raise _refused("malformed", f"a {verified.kind} on the desired topic")
            seq = doc.seq
            stored = self.store.desired()
            if stored is not None and seq == stored.seq:
                if stored.encoded == data:
                    return Outcome()  # the retained message again
                raise _refused("replayed", f"another document with applied seq {seq}")
            if stored is not None and seq < stored.seq:
                raise _refused("stale", f"seq {seq} is below the applied {stored.seq}")
            keys = self._open_keys(doc)
        except ControlRefused as refused:
            self.refuse(refused.why, str(refused), topic="desired")
            return Outcome()
        except Exception as exc:
            self.refuse("malformed", f"{type(exc).__name__}: {exc}", topic="desired")
            return Outcome()
        self._keep_revocations(verified)
        self.store.save_desired(seq, data, now_ms())
        self._enrol(doc, keys)
        self._use(doc, seq)
        self.reconcile()
        log.info("applied desired document %d", seq)
        return Outcome(applied=True)

    def _open_keys(self, doc: messages.Desired) -> list[BoardKey]:
        """Every board's sealed key material, opened; refused whole if one does not open."""
        keys: list[BoardKey] = []
        for board_id, entry in sorted(doc.boards.items()):
            if entry.oscore is None:
                continue
            try:
                plain = seal.open_sealed(
                    entry.oscore,
                    self.seal_key,
                    site=self.config.site,
                    gateway=self.config.gateway_id,
                    board_id=board_id,
                )
                material = KeyMaterial.from_json(json.loads(plain))
            except (SealRefused, BadBoardKeys, ValueError) as exc:
                raise _refused("sealed_key", f"board {board_id}: {exc}") from None
            keys.append(BoardKey(board_id, material))
        try:
            check_unique(keys)
        except BadBoardKeys as exc:
            raise _refused("sealed_key", str(exc)) from None
        return keys

    def _enrol(self, doc: messages.Desired, keys: list[BoardKey]) -> None:
        """Make the document's sealed keys the enrolled boards (of source ``control``)."""
        try:
            changed = self.board_keys.put(keys, source="control")
        except BadBoardKeys as exc:  # a sid a keys-file board holds
            self.refuse("sealed_key", str(exc), topic="desired")
            return
        enrolled = {k.board_id for k in keys}
        gone = [b for b in self.board_keys.boards(source="control") if b not in enrolled]
        self.board_keys.remove(gone)
        if changed or gone:
            log.info("board keys: %d enrolled or re-keyed, %d removed", len(changed), len(gone))

    def _use(self, doc: messages.Desired, seq: int) -> None:
        self.doc, self.doc_seq = doc, seq
        self.settings = Settings.of(self.config.control)
        ignored: list[str] = []
        for name, value in doc.config.items():
            target = KNOWN_OVERRIDES.get(name)
            if target is None or type(value) is not int or value < 1:
                ignored.append(str(name))
                continue
            setattr(self.settings, target, value)
        if ignored:
            self.event("alert", None, {"what": "config_ignored", "names": sorted(ignored)})

    def missing_releases(self) -> list[int]:
        """Releases the applied document lists that the cache lacks."""
        if self.doc is None:
            return []
        listed = self.doc.releases
        return sorted({s for s in listed if s > 0 and not self.releases.has_release(s)})

    def on_release(self, seq: int, data: bytes) -> bool:
        """A release file from ``simpul/releases/<seq>``: verified and cached by the cache."""
        if seq not in self.missing_releases():
            return False
        try:
            added = self.cache.add(data, now=self.now())
            if added.release.seq != seq:
                self.cache_mismatch(seq, added.release.seq)
        except GatewayError as exc:
            self.refuse(getattr(exc, "reason", "malformed"), str(exc), topic=f"releases/{seq}")
            return False
        except Exception as exc:
            self.refuse("malformed", f"{type(exc).__name__}: {exc}", topic=f"releases/{seq}")
            return False
        self.reconcile()
        return True

    def cache_mismatch(self, topic_seq: int, seq: int) -> None:
        self.event("alert", None, {"what": "release_topic_seq", "topic": topic_seq, "seq": seq})

    def reconcile(self) -> None:
        """Per-board desired releases from the document and the rollout's progress
        (``gateway.control.reconciler``); only cached releases are desired."""
        if self.doc is None:
            return
        cached = frozenset(r.seq for r in self.releases.releases())
        stored = self.store.rollout_progress()
        progress = None if stored is None else reconciler.Progress.from_json(stored)
        outcome = reconciler.reconcile(self.doc, self._board_views(), progress, now_ms())
        wanted = {b: seq for b, seq in outcome.desired.items() if seq in cached}
        current = {t: s for scope, t, s in self.releases.desired() if scope == "board"}
        if wanted != current:
            self.releases.replace_board_desired(wanted)
        if outcome.progress is not None:
            text = outcome.progress.to_json()
            if text != stored or outcome.events:
                at = now_ms()
                events = [
                    Event(at, f"rollout_{kind}", detail.get("board"), {
                        "rollout": outcome.progress.rollout, **detail
                    })
                    for kind, detail in outcome.events
                ]  # fmt: skip
                self.store.save_rollout_progress(text, events)
        plan = self.doc.rollout
        self.rollout_report = (
            None if outcome.progress is None or plan is None else outcome.progress.report(plan)
        )

    def _board_views(self) -> dict[str, reconciler.BoardView]:
        """What the gateway knows of every board, for the reconciler (all of them)."""
        ota = {b: (running, state, detail, at) for b, running, state, detail, at in
               self.releases.board_ota()}  # fmt: skip
        views = {}
        for record in self.reader.boards():
            running, state, detail, at = ota.get(record.board_id, (0, None, None, 0))
            boots = (record.last_health or {}).get("boot_count")
            views[record.board_id] = reconciler.BoardView(
                running=running,
                ota_state=state,
                ota_detail=detail,
                ota_ms=at,
                health_ms=record.health_ms or 0,
                boot_count=boots if type(boots) is int else None,
            )
        return views

    # -- commands -------------------------------------------------------------------------

    def on_command(self, data: bytes) -> Outcome:
        """A message on ``commands``: verified, checked (expiry, nonce), carried out."""
        now = self.now()
        try:
            verified = self._verify(data)
            command = verified.message
            if not isinstance(command, messages.Command):
                raise _refused("malformed", f"a {verified.kind} on the commands topic")
            messages.check_command_time(command, now=now, max_ttl_s=self.settings.max_command_ttl_s)
            if not self.store.take_nonce(command.id, command.expires, now):
                raise _refused("replayed", f"command {command.id.hex()} seen before")
        except ControlRefused as refused:
            self.refuse(refused.why, str(refused), topic="commands")
            return Outcome()
        except Exception as exc:
            self.refuse("malformed", f"{type(exc).__name__}: {exc}", topic="commands")
            return Outcome()
        self._keep_revocations(verified)
        try:
            reply = self._run(command, now)
        except Exception as exc:
            log.exception("command %s failed", command.action)
            reply = self.reply(command.id, ok=False, error=f"{type(exc).__name__}: {exc}")
        return Outcome(replies=[] if reply is None else [reply])

    def _run(self, command: messages.Command, now: int) -> dict[str, Any] | None:
        cid = command.id
        action = command.action
        if action == "ping":
            return self.reply(cid, ok=True, result={"at": now_ms()})
        if action == "reload":
            return self.reply(cid, ok=True, result=self.reload())
        board_id = command.board
        if not isinstance(board_id, str):
            return self.reply(cid, ok=False, error=f"{action} needs a board")
        if action in messages.LINE_ACTIONS:
            return self.wired(cid, action, board_id)
        record = self.reader.board(board_id)
        if action == "log":
            return self.reply(cid, ok=True, result=self.board_log(board_id))
        if action == "reboot":
            if record is None:
                return self.reply(cid, ok=False, error=f"board {board_id} never seen")
            boots = _boot_count(record.last_health)
            self.store.add_board_command(
                BoardCommand(cid, board_id, "reboot", boots, command.expires)
            )
            return None  # the reply comes once the board has rebooted
        return self.reply(cid, ok=False, error=f"unknown action {action!r}")

    def wired(self, cid: bytes, action: str, board_id: str) -> dict[str, Any]:
        """``power_cycle`` or ``bootloader`` on a board's EN and IO0 lines, by the daemon
        that owns the GPIO; the reply says what was done, or why nothing was."""
        pi = self.config.pi
        if pi is None:
            error = f"{action}: this gateway has no GPIO ([gateway.pi] is not configured)"
            return self.reply(cid, ok=False, error=error)
        if board_id not in pi.boards:
            wired = ", ".join(sorted(pi.boards)) or "none"
            error = f"board {board_id} has no EN/IO0 lines wired to this gateway (wired: {wired})"
            return self.reply(cid, ok=False, error=error)
        try:
            answer = self.ask_pi({"op": action, "board": board_id})
        except PiUnavailable as exc:
            return self.reply(cid, ok=False, error=str(exc))
        if answer.get("ok") is True:
            result = answer.get("result")
            return self.reply(cid, ok=True, result=result if isinstance(result, dict) else {})
        return self.reply(cid, ok=False, error=str(answer.get("error")))

    def pi_status(self) -> dict[str, Any] | None:
        """The daemon's GPIO state for the state message (None: the gateway has no GPIO)."""
        if self.config.pi is None:
            return None
        try:
            answer = self.ask_pi({"op": "status"})
        except PiUnavailable as exc:
            return {"error": str(exc)}
        result = answer.get("result")
        if answer.get("ok") is not True or not isinstance(result, dict):
            return {"error": str(answer.get("error"))}
        return result

    def board_commands_done(self) -> list[dict[str, Any]]:
        """Replies of board commands now done (health shows a reboot) or expired."""
        replies = []
        now = self.now()
        for command in self.store.board_commands():
            record = self.reader.board(command.board_id)
            boots = _boot_count(record.last_health if record else None)
            if boots > command.boot_count:
                result = {"board": command.board_id, "boot_count": boots}
                if record is not None and record.last_health is not None:
                    result["reset_cause"] = record.last_health.get("reset_cause")
                replies.append(self.reply(command.id, ok=True, result=result))
            elif command.expires < now:
                error = f"board {command.board_id} did not reboot before the command expired"
                replies.append(self.reply(command.id, ok=False, error=error))
            else:
                continue
            self.store.finish_board_command(command.id)
        return replies

    def board_log(self, board_id: str) -> dict[str, Any]:
        record = self.reader.board(board_id)
        ota = next((o for o in self.releases.board_ota() if o[0] == board_id), None)
        events = [e.to_map() for _, e in self.store.events(10_000) if e.board == board_id][
            -_LOG_EVENTS:
        ]
        return {
            "board": board_id,
            "known": record is not None,
            "last_seen_ms": None if record is None else record.last_seen_ms,
            "health": None if record is None else record.last_health,
            "health_ms": None if record is None else record.health_ms,
            "ota": None
            if ota is None
            else {"running": ota[1], "state": ota[2], "detail": ota[3], "at": ota[4]},
            "events": events,
        }

    def reload(self) -> dict[str, Any]:
        """Read the TOML file again; apply what this process can, say what changed."""
        path = self.config.config_file
        if path is None:
            return {"changed": {}, "applied": [], "note": "started without a config file"}
        fresh = load_config(path)
        # The command line's settings (state dir, ids, bind) are not in the file.
        fresh = replace(
            fresh,
            state_dir=self.config.state_dir,
            gateway_id=self.config.gateway_id,
            site=self.config.site,
            bind=self.config.bind,
        )
        changed = _diff(_flat(self.config), _flat(fresh))
        applied = [
            n for n in ("control.state_interval_s", "control.max_command_ttl_s") if n in changed
        ]
        self.config = fresh
        if self.doc is not None:
            self._use(self.doc, self.doc_seq)  # the document's overrides stay on top
        else:
            self.settings = Settings.of(fresh.control)
        return {
            "changed": changed,
            "applied": applied,
            "restart_needed": sorted(set(changed) - set(applied)),
        }

    # -- refusals, events, replies --------------------------------------------------------

    def refuse(self, reason: str, message: str, *, topic: str) -> None:
        log.warning("refused a message on %s (%s): %s", topic, reason, message)
        self.store.count_refusal(reason)
        self.event("refused", None, {"reason": reason, "topic": topic, "message": message[:200]})

    def event(self, kind: str, board: str | None, detail: dict[str, Any]) -> None:
        self.store.queue_events([Event(now_ms(), kind, board, detail)])

    def reply(
        self,
        command_id: bytes,
        *,
        ok: bool,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> dict[str, Any]:
        return {
            "type": "reply",
            "v": 1,
            "site": self.config.site,
            "gateway": self.config.gateway_id,
            "id": command_id,
            "ok": ok,
            "result": result,
            "error": error,
        }

    def control_state(self) -> dict[str, Any]:
        return {"desired_seq": self.doc_seq, "refused": self.store.refusals()}

    def _verify(self, data: bytes) -> messages.Verified:
        if len(data) > MAX_ENVELOPE_BYTES:
            raise _refused("malformed", f"{len(data)} bytes, over {MAX_ENVELOPE_BYTES}")
        seen, _ = self.store.revocations()
        return messages.verify_envelope(
            data,
            self.root,
            now=self.now(),
            revocations_seen=seen,
            site=self.config.site,
            gateway=self.config.gateway_id,
        )

    def _keep_revocations(self, verified: messages.Verified) -> None:
        self.store.save_revocations(verified.revocations_seq, verified.revocations)


def _refused(reason: str, message: str) -> ControlRefused:
    return ControlRefused(reason, message)


def _boot_count(health: Mapping[str, Any] | None) -> int:
    value = health.get("boot_count") if health is not None else None
    return value if type(value) is int else 0


def _flat(config: Any, prefix: str = "") -> dict[str, Any]:
    import dataclasses

    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(_flat(value, name + "."))
        else:
            out[name] = (
                value
                if isinstance(value, int | float | str | bool) or value is None
                else str(value)
            )
    return out


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    return {name: new[name] for name in new if old.get(name) != new[name]}


__all__ = ["KNOWN_OVERRIDES", "MAX_ENVELOPE_BYTES", "Controller", "Outcome", "Settings"]
