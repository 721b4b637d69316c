"""The control process: the gateway's end of the fleet's control channel over MQTT.

Topics (``simpul/<site>/<gateway>/...``, ``gateway.control.topics``)::

    desired     down, retained   the operator-signed desired document
    commands    down, QoS 1      operator-signed commands
    state       up, retained     the gateway-signed state (every state_interval_s)
    events      up               gateway-signed batches of events
    replies     up               gateway-signed replies to commands
    simpul/releases/<seq>  down, retained   release files the document lists

**Session.** The client connects with MQTT 5, a stable client id
(``<client_id_prefix><gateway>-control``), ``clean_start`` false and a session expiry of a
week: the broker keeps the subscriptions and queues the QoS 1 commands published while the
gateway was away (a reboot asked during a backhaul outage still arrives), and the retained
desired document comes on every subscribe anyway. The connection asks the broker for
packets no larger than a release file may be (``Maximum Packet Size``), and desired
documents and commands are refused above :data:`gateway.control.apply.MAX_ENVELOPE_BYTES`;
what paho receives goes through a bounded queue to this process's one thread, which alone
touches the database.

**No broker.** The process starts without one: it acts on the stored document
(:meth:`Controller.resume`), derives events into the queue (``control_events``, bounded), and
paho retries the broker with backoff (1 s doubling to 30 s) until it answers.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleet.release import MAX_RELEASE_BYTES
from gateway.batches.keys import GatewayIdentity
from gateway.config import GatewayConfig, parse_bind
from gateway.control import messages, topics
from gateway.control.apply import Controller
from gateway.control.gwhealth import UplinkProgress, boards_state, gateway_health
from gateway.oscore import seal, stats_file
from gateway.pi.host import HostSensors
from gateway.store.control import EVENTS_DROPPED, BoardMark, ControlStore, Event
from gateway.store.schema import now_ms
from gateway.uplinks.mqtt import new_client

log = logging.getLogger(__name__)

#: How often (s) events are derived from the registry and board commands checked.
TICK_S: Final = 1.0
#: Events per ``events`` message at most.
EVENTS_PER_MESSAGE: Final = 100
#: Replies waiting for the broker at most (the oldest are dropped).
MAX_REPLIES: Final = 1000
#: Messages received and not yet handled at most (paho's thread waits beyond it).
INBOX: Final = 64
SESSION_EXPIRY_S: Final = 7 * 86_400
_KEEPALIVE_S: Final = 30
_RELEASES: Final = topics.release_topic(0)[:-1]


@dataclass(frozen=True, slots=True)
class _Received:
    topic: str
    payload: bytes


class ControlAgent:
    """Runs the control channel until ``stopping()``; see the module docstring."""

    def __init__(
        self,
        config: GatewayConfig,
        controller: Controller,
        identity: GatewayIdentity,
        *,
        readings_uplinks: list[str],
        batch_uplinks: list[str],
    ) -> None:
        self.config = config
        self.controller = controller
        self.store: ControlStore = controller.store
        self.identity = identity
        self.readings_uplinks = readings_uplinks
        self.batch_uplinks = batch_uplinks
        site, gateway = config.site, config.gateway_id
        self.topic_desired = topics.gateway_topic(site, gateway, topics.DESIRED)
        self.topic_commands = topics.gateway_topic(site, gateway, topics.COMMANDS)
        self.topic_state = topics.gateway_topic(site, gateway, topics.STATE)
        self.topic_events = topics.gateway_topic(site, gateway, topics.EVENTS)
        self.topic_replies = topics.gateway_topic(site, gateway, topics.REPLIES)
        self.client_id = f"{config.broker.client_id_prefix}{gateway}-control"
        self._inbox: queue.Queue[_Received] = queue.Queue(INBOX)
        self._replies: deque[dict[str, Any]] = deque(maxlen=MAX_REPLIES)
        self._connected = False
        self._client: mqtt.Client | None = None
        self._subscribed_releases: set[int] = set()
        self._events_in_flight: tuple[mqtt.MQTTMessageInfo, int] | None = None
        self._progress = UplinkProgress()
        self._host = HostSensors(config.state_dir)
        self._state_due = 0.0
        self._stopping: Callable[[], bool] = lambda: False

    # -- the loop -------------------------------------------------------------------------

    def run(self, stopping: Callable[[], bool]) -> None:
        self._stopping = stopping
        self.controller.resume()
        self._open()
        next_tick = 0.0
        try:
            while not stopping():
                try:
                    received = self._inbox.get(timeout=0.1)
                except queue.Empty:
                    received = None
                if received is not None:
                    self._handle(received)
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + TICK_S
                    self._tick()
                if now >= self._state_due:
                    self._state_due = now + self.controller.settings.state_interval_s
                    self._publish_state()
                self._flush()
        finally:
            self._close()

    def _tick(self) -> None:
        self.derive_events()
        self._replies.extend(self.controller.board_commands_done())
        self.controller.reconcile()
        self._follow_releases()

    def _handle(self, received: _Received) -> None:
        topic, payload = received.topic, received.payload
        if topic == self.topic_desired:
            outcome = self.controller.on_desired(payload)
            if outcome.applied:
                self._follow_releases()
                self._state_due = 0.0  # publish the new state at once
        elif topic == self.topic_commands:
            outcome = self.controller.on_command(payload)
            self._replies.extend(outcome.replies)
        elif topic.startswith(_RELEASES):
            seq_text = topic[len(_RELEASES) :]
            if seq_text.isdigit() and self.controller.on_release(int(seq_text), payload):
                self._state_due = 0.0
            self._follow_releases()

    # -- events ---------------------------------------------------------------------------

    def derive_events(self) -> None:
        """Compare the registry and OTA states with the marks kept; queue what changed."""
        marks = self.store.marks()
        ota = {b: (s, d) for b, _r, s, d, _u in self.controller.releases.board_ota()}
        changed: dict[str, BoardMark] = {}
        events: list[Event] = []
        at = now_ms()
        for record in self.controller.reader.boards():
            health = record.last_health or {}
            boots = health.get("boot_count")
            boot_count = boots if type(boots) is int else None
            state, detail = ota.get(record.board_id, (None, None))
            mark = BoardMark(boot_count, state, detail)
            old = marks.get(record.board_id)
            if old == mark:
                continue
            changed[record.board_id] = mark
            board = record.board_id
            if old is None:
                events.append(Event(at, "board_seen", board, {"boot_count": boot_count}))
            elif (
                boot_count is not None
                and old.boot_count is not None
                and boot_count > old.boot_count
            ):
                cause = health.get("reset_cause")
                events.append(
                    Event(
                        at,
                        "reboot",
                        board,
                        {
                            "boot_count": boot_count,
                            "reset_cause": cause if isinstance(cause, str) else None,
                        },
                    )
                )
            if state is not None and (
                old is None
                or (old.ota_state, old.ota_detail)
                != (
                    state,
                    detail,
                )
            ):
                events.append(Event(at, "ota", board, {"state": state, "detail": detail}))
        if changed:
            self.store.save_marks(changed, events)

    # -- the broker -----------------------------------------------------------------------

    def _open(self) -> None:
        client = new_client(self.config.broker, self.client_id, protocol=MQTTProtocolVersion.MQTTv5)
        client.reconnect_delay_set(1, 30)
        client.max_queued_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        properties.MaximumPacketSize = MAX_RELEASE_BYTES + 64 * 1024
        host, port = parse_bind(self.config.broker.address)
        self._client = client
        client.connect_async(
            host, port, keepalive=_KEEPALIVE_S, clean_start=False, properties=properties
        )
        client.loop_start()

    def _close(self) -> None:
        self._host.close()
        client, self._client = self._client, None
        if client is None:
            return
        client.disconnect()
        client.loop_stop()

    def _follow_releases(self) -> None:
        """Subscribe to the releases the document lists and the cache lacks; unsubscribe
        from the others (their retained files need not come again)."""
        client = self._client
        if client is None or not self._connected:
            return
        wanted = set(self.controller.missing_releases())
        for seq in sorted(wanted - self._subscribed_releases):
            client.subscribe(topics.release_topic(seq), qos=1)
        for seq in sorted(self._subscribed_releases - wanted):
            client.unsubscribe(topics.release_topic(seq))
        self._subscribed_releases = wanted

    def _publish(self, topic: str, payload: dict[str, Any], *, retain: bool = False) -> Any:
        assert self._client is not None
        data = messages.sign_up(self.identity.current.private, payload)
        return self._client.publish(topic, data, qos=1, retain=retain)

    def _publish_state(self) -> None:
        if self._client is None or not self._connected:
            return
        payload = self.state_payload()
        self._publish(self.topic_state, payload, retain=True)

    def state_payload(self) -> dict[str, Any]:
        controller = self.controller
        counters = {
            EVENTS_DROPPED: self.store.counter(EVENTS_DROPPED),
            "events_queued": self.store.queued_events(),
        }
        return {
            "type": "state",
            "v": 1,
            "site": self.config.site,
            "gateway": self.config.gateway_id,
            "at": now_ms(),
            "seq": self.store.next_seq("state_seq"),
            "health": gateway_health(
                self.config.state_dir,
                controller.reader,
                self._progress,
                readings_uplinks=self.readings_uplinks,
                batch_uplinks=self.batch_uplinks,
                counters=counters,
                control=controller.control_state(),
                host=self._host,
                pi=controller.pi_status(),
                outbox_max_bytes=self.config.outbox.max_bytes,
                outbox_policy=self.config.outbox.policy,
            )
            | {"security": self.security_health()},
            "boards": boards_state(controller.reader, controller.releases),
            "rollout": controller.rollout_report,
            # What the fleet seals board keys to (gateway.oscore.seal).
            "seal_key": seal.public_bytes(controller.seal_key),
        }

    def security_health(self) -> dict[str, Any]:
        """Lab mode and OSCORE's refusals by reason, as the CoAP process last wrote them; lab
        mode from this process's own config when it has not written yet."""
        reported = stats_file.read(self.config.state_dir) or {}
        return {**reported, "plain_coap": self.config.security.plain_coap}

    def _flush(self) -> None:
        """Replies, then events (one message in flight), while connected."""
        if self._client is None or not self._connected:
            return
        while self._replies:
            self._publish(self.topic_replies, self._replies.popleft())
        if self._events_in_flight is not None:
            info, through = self._events_in_flight
            if not info.is_published():
                return
            self.store.published_events(through)
            self._events_in_flight = None
        queued = self.store.events(EVENTS_PER_MESSAGE)
        if not queued:
            return
        payload = {
            "type": "events",
            "v": 1,
            "site": self.config.site,
            "gateway": self.config.gateway_id,
            "seq": self.store.next_seq("events_seq"),
            "events": [event.to_map() for _, event in queued],
        }
        info = self._publish(self.topic_events, payload)
        self._events_in_flight = (info, queued[-1][0])

    # paho's callbacks run in its network thread: they only set flags and queue.

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning(
                "broker %s refused the control client: %s", self.config.broker.address, reason
            )
            return
        log.info("control channel connected to %s", self.config.broker.address)
        client.subscribe([(self.topic_desired, 1), (self.topic_commands, 1)])
        self._subscribed_releases = set()
        self._events_in_flight = None
        self._connected = True
        self._state_due = 0.0

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._connected = False

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        received = _Received(str(message.topic), bytes(message.payload))
        while not self._stopping():
            try:
                self._inbox.put(received, timeout=0.5)
                return
            except queue.Full:
                continue


__all__ = ["ControlAgent"]
