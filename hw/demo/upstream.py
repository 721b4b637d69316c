"""The demo's upstream: a consumer of the gateways' batches on the broker, as the city's data
platform would be one. Every batch is verified (signature and hash chain) with the key of the
gateway it names before its readings count as *delivered upstream*."""

from __future__ import annotations

import os
import threading
from collections import Counter, defaultdict
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.batches.verify import ChainVerifier, KeySet
from gateway.control import topics
from gateway.uplinks.mqtt import batches_topic

SUBSCRIBE_TIMEOUT_S: Final = 10.0


class Upstream:
    """Counts the verified readings each site delivered, and keeps each site's latest value of
    every numeric quantity. Call :meth:`trust` for every gateway before :meth:`start`."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._keys = KeySet()
        self._sites: set[str] = set()
        self._verifier: ChainVerifier | None = None
        self._lock = threading.Lock()
        self._readings: Counter[str] = Counter()
        self._latest: dict[str, dict[str, float]] = defaultdict(dict)
        self.failures = 0
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"simpul-demo-upstream-{os.getpid()}"
        )

    def trust(self, site_id: str, public_key: bytes) -> None:
        """Accept batches of the gateway with this key, at this site."""
        self._keys.add(public_key)
        self._sites.add(site_id)

    def start(self) -> None:
        """Connect and subscribe; returns once the broker confirmed the subscription."""
        self._verifier = ChainVerifier(self._keys, join=True)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(self.host, self.port)
        self._client.loop_start()
        if not self._subscribed.wait(SUBSCRIBE_TIMEOUT_S):
            self.stop()
            raise RuntimeError(f"the broker {self.host}:{self.port} did not take a subscription")

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe([(batches_topic(site, "+"), 1) for site in sorted(self._sites)])

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        where = topics.parse_gateway_topic(message.topic)
        if where is None or self._verifier is None:
            return
        site = where[0]
        with self._lock:
            outcome = self._verifier.feed(bytes(message.payload))
            if any(p.is_failure for p in outcome.problems) or outcome.batch is None:
                self.failures += 1
                return
            self._readings[site] += len(outcome.readings)
            for reading in outcome.readings:
                value = reading.value
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self._latest[site][reading.name] = float(value)

    def delivered(self) -> dict[str, int]:
        """Verified readings delivered so far, by site id."""
        with self._lock:
            return dict(self._readings)

    def latest(self, site_id: str) -> dict[str, float]:
        """The site's latest delivered value of each quantity."""
        with self._lock:
            return dict(self._latest.get(site_id, {}))

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
