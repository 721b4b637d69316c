"""The fleet manager's connection to the broker: gateways' state, events, replies and batches
in; desired-state documents, commands and releases out.

paho-mqtt runs the connection in its own thread; what arrives is put on a bounded queue the
engine drains (:meth:`FleetLink.received`), so a flood of messages costs memory up to the
bound and then is dropped and counted, never more. Nothing here trusts a payload: the engine
verifies each with the gateway's key (``gateway.control.messages.verify_up``, and the batch
verifier for batches).

Documents and releases are published retained with QoS 1, so a gateway that connects later
(or reconnects after an outage) gets the newest at once; commands are not retained (a
command expires, and a gateway runs each at most once).
"""

from __future__ import annotations

import argparse
import queue
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fleet.errors import FleetError
from gateway.control import topics

#: Up topics the fleet listens to, under ``simpul/<site>/<gateway>/``.
UP_LEAVES: Final = (topics.STATE, topics.EVENTS, topics.REPLIES, "batches")
#: Messages held for the engine before new ones are dropped (and counted).
MAX_QUEUED: Final = 50_000


class LinkError(FleetError, OSError):
    """The broker cannot be reached, refused the fleet, or a publish failed."""


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """Where the broker is and how the fleet logs in."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password_file: Path | None = None
    tls_ca_file: Path | None = None
    client_id: str = "simpul-fleet"
    keepalive_s: int = 30

    @classmethod
    def parse(cls, address: str, **kwargs: Any) -> BrokerSettings:
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"broker {address!r} is not HOST:PORT")
        return cls(host.strip("[]"), int(port), **kwargs)


def add_broker_arguments(
    parser: argparse.ArgumentParser, *, default: str | None, help: str
) -> None:
    """``--broker`` (with ``default`` and ``help``) and how to log in to it: ``--username``,
    ``--password-file``, ``--tls-ca``; the same on every command that talks to the broker."""
    parser.add_argument("--broker", default=default, metavar="HOST:PORT", help=help)
    parser.add_argument("--username", help="broker user name")
    parser.add_argument(
        "--password-file", type=Path, metavar="FILE", help="broker password, read from FILE"
    )
    parser.add_argument(
        "--tls-ca", type=Path, metavar="FILE", help="connect with TLS, trusting this CA file"
    )


def broker_from_arguments(
    args: argparse.Namespace, *, client_id: str | None = None
) -> BrokerSettings | None:
    """The settings :func:`add_broker_arguments`' options give (``None``: no ``--broker``);
    ``ValueError`` for an address that is not HOST:PORT."""
    if args.broker is None:
        return None
    extra: dict[str, Any] = {} if client_id is None else {"client_id": client_id}
    return BrokerSettings.parse(
        args.broker,
        username=args.username,
        password_file=args.password_file,
        tls_ca_file=args.tls_ca,
        **extra,
    )


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message from a gateway: where from, which leaf, the raw payload."""

    site: str
    gateway: str
    leaf: str
    payload: bytes


class FleetLink:
    """One MQTT connection for the fleet manager."""

    def __init__(self, settings: BrokerSettings, *, max_queued: int = MAX_QUEUED) -> None:
        self.settings = settings
        self.dropped = 0
        self._queue: queue.Queue[Incoming] = queue.Queue(max_queued)
        self._connected = threading.Event()
        self._client: mqtt.Client | None = None
        self.connected_once = False

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background; paho reconnects by itself after a loss."""
        s = self.settings
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        if s.username is not None:
            password = None
            if s.password_file is not None:
                try:
                    password = s.password_file.read_text().strip()
                except OSError as exc:
                    raise LinkError(f"cannot read {s.password_file}: {exc.strerror}") from None
            client.username_pw_set(s.username, password)
        if s.tls_ca_file is not None:
            client.tls_set(ca_certs=str(s.tls_ca_file), cert_reqs=ssl.CERT_REQUIRED)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 30)
        client.max_queued_messages_set(10_000)
        self._client = client
        client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
        client.loop_start()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def received(self, limit: int = 10_000) -> list[Incoming]:
        """What arrived since the last call, oldest first, at most ``limit``."""
        found: list[Incoming] = []
        while len(found) < limit:
            try:
                found.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return found

    def wait(self, timeout_s: float) -> list[Incoming]:
        """Wait up to ``timeout_s`` for something to arrive, then take what did."""
        try:
            first = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return []
        return [first, *self.received()]

    def publish(self, topic: str, payload: bytes, *, retain: bool) -> mqtt.MQTTMessageInfo:
        """Queue ``payload`` (QoS 1); paho sends it when connected."""
        client = self._client
        if client is None:
            raise LinkError("the fleet's broker link is not started")
        info = client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise LinkError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        return info

    # paho's callbacks run in its network thread.

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            return
        for leaf in UP_LEAVES:
            client.subscribe(f"{topics.PREFIX}/+/+/{leaf}", qos=1)
        self.connected_once = True
        self._connected.set()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._connected.clear()

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        where = topics.parse_gateway_topic(message.topic)
        if where is None:
            return
        site, gateway, leaf = where
        try:
            self._queue.put_nowait(Incoming(site, gateway, leaf, bytes(message.payload)))
        except queue.Full:
            self.dropped += 1


__all__ = ["BrokerSettings", "FleetLink", "Incoming", "LinkError"]
