"""The MQTT batch uplink: each batch one QoS 1 message, confirmed by its PUBACK.

Topics (``<site>`` and ``<gateway>`` as configured)::

    simpul/<site>/<gateway>/batches   payload: one batch, the COSE_Sign1 bytes as stored
    simpul/<site>/<gateway>/status    retained: "online" once connected; "offline" when
                                      the gateway stops, or (last will) when it vanishes

paho-mqtt runs the connection in its own thread; :class:`MqttSender` publishes up to the
uplink's window and reports a batch confirmed once paho has its PUBACK, so the cursor moves
only over batches the broker took responsibility for. A lost connection is an
:class:`~gateway.errors.UplinkError`: the uplink backs off, connects a new client and sends
again from its cursor (the broker may then see a batch twice; consumers know it as a repeat).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway.config import BrokerConfig
from gateway.errors import ConfigError, UplinkError
from gateway.store.batch_log import StoredBatch
from gateway.uplinks.delivery import Sender

UPLINK_NAME: Final = "mqtt"
ONLINE: Final = b"online"
OFFLINE: Final = b"offline"
_CLOSE_WAIT_S: Final = 2.0


def batches_topic(site: str, gateway: str) -> str:
    return f"simpul/{site}/{gateway}/batches"


def status_topic(site: str, gateway: str) -> str:
    return f"simpul/{site}/{gateway}/status"


def new_client(
    broker: BrokerConfig | None,
    client_id: str,
    *,
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311,
) -> mqtt.Client:
    """A paho client with the broker's user name, password and TLS applied: MQTT 3.1.1
    with a clean session, or MQTT 5 (whose session is chosen at connect).

    Shared by the batch uplink and the control process, so both reach the broker the same
    way. The password never leaves this function but to paho. Raises :class:`ConfigError`
    for an unreadable password file or TLS file."""
    if protocol == MQTTProtocolVersion.MQTTv5:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    else:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            clean_session=True,
        )
    if broker is None:
        return client
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password())
    if broker.tls_ca_file is not None:
        try:
            client.tls_set(
                ca_certs=str(broker.tls_ca_file),
                certfile=None if broker.tls_cert_file is None else str(broker.tls_cert_file),
                keyfile=None if broker.tls_key_file is None else str(broker.tls_key_file),
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(f"gateway.broker: cannot set up TLS: {exc}") from None
    return client


class MqttSender(Sender[StoredBatch]):
    """Publishes batches to one broker (TCP, MQTT 3.1.1, QoS 1)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        gateway_id: str,
        site: str,
        window: int = 16,
        keepalive_s: int = 30,
        connect_timeout_s: float = 10.0,
        broker: BrokerConfig | None = None,
        client_id_prefix: str = "simpul-",
    ) -> None:
        self.broker = broker
        self.host = host
        self.port = port
        self.window = window
        self.keepalive_s = keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self.client_id = f"{client_id_prefix}{gateway_id}-batches"
        self.topic = batches_topic(site, gateway_id)
        self.status = status_topic(site, gateway_id)
        self._client: mqtt.Client | None = None
        self._pending: list[tuple[int, mqtt.MQTTMessageInfo]] = []
        self._changed = threading.Event()
        self._connected = threading.Event()
        self._refused: str | None = None
        self._lost = False

    def open(self) -> None:
        try:
            client = new_client(self.broker, self.client_id)
        except ConfigError as exc:
            raise UplinkError(str(exc)) from None
        client.max_inflight_messages_set(self.window)
        client.max_queued_messages_set(0)
        client.will_set(self.status, OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._pending.clear()
        self._connected.clear()
        self._refused, self._lost = None, False
        self._client = client
        try:
            client.connect(self.host, self.port, keepalive=self.keepalive_s)
        except OSError as exc:
            raise UplinkError(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        client.loop_start()
        if not self._connected.wait(self.connect_timeout_s) or self._refused:
            raise UplinkError(
                f"broker {self.host}:{self.port} refused or did not answer: {self._refused}"
            )
        client.publish(self.status, ONLINE, qos=1, retain=True)

    def send(self, batch: StoredBatch) -> None:
        client = self._live()
        info = client.publish(self.topic, batch.encoded, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise UplinkError(
                f"publish to {self.host}:{self.port} failed: {mqtt.error_string(info.rc)}"
            )
        self._pending.append((batch.seq, info))

    def confirmed(self, timeout_s: float) -> list[int]:
        self._live()
        if self._pending and not self._pending[0][1].is_published():
            self._changed.wait(timeout_s)
        self._changed.clear()
        done = [seq for seq, info in self._pending if info.is_published()]
        if done:
            self._pending = [(s, i) for s, i in self._pending if not i.is_published()]
        self._live()
        return done

    def close(self, *, graceful: bool) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if graceful and self._connected.is_set() and not self._lost:
            # A clean DISCONNECT suppresses the will, so say "offline" ourselves.
            info = client.publish(self.status, OFFLINE, qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(_CLOSE_WAIT_S)
        client.disconnect()
        client.loop_stop()
        self._pending.clear()

    def _live(self) -> mqtt.Client:
        if self._client is None or self._lost:
            raise UplinkError(f"connection to {self.host}:{self.port} lost")
        return self._client

    # paho's callbacks run in its network thread.

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._refused = str(reason)
        self._connected.set()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._lost = True
        self._connected.set()
        self._changed.set()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._changed.set()


__all__ = [
    "OFFLINE",
    "ONLINE",
    "UPLINK_NAME",
    "MqttSender",
    "batches_topic",
    "new_client",
    "status_topic",
]
