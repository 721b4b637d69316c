"""Upstream ends for uplink tests: an MQTT subscriber recording every message, and an HTTP
server on loopback recording every POST and idempotency key (and failing on demand)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.mosquitto import Broker


class Subscriber:
    """A QoS 1 subscriber (clean session off, so an outage of ours loses nothing queued)."""

    def __init__(self, broker: Broker, topic: str, *, client_id: str = "test-subscriber") -> None:
        self.broker = broker
        self.topic = topic
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)

    def start(self) -> Subscriber:
        self.client.connect(self.broker.host, self.broker.port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("subscription not acknowledged")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def payloads(self, topic: str | None = None) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if topic is None or t == topic]


@dataclass
class HttpUpstream:
    """What the HTTP server received; ``fail_with`` answers instead of accepting (e.g. 503)."""

    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    fail_with: int | None = None
    answers: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ingest"

    def accepted(self) -> list[bytes]:
        """Bodies accepted (2xx), first time each key was seen, in arrival order."""
        with self.lock:
            seen: set[str] = set()
            bodies = []
            for _, headers, body in self.requests:
                key = headers.get("Idempotency-Key", "")
                if key not in seen and headers.get("_status") == "201":
                    seen.add(key)
                    bodies.append(body)
            return bodies


def _handler(upstream: HttpUpstream) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k: v for k, v in self.headers.items()}
            key = headers.get("Idempotency-Key", "")
            with upstream.lock:
                if upstream.fail_with is not None:
                    status = upstream.fail_with
                elif key in upstream.keys:
                    status = 409
                else:
                    upstream.keys.add(key)
                    status = 201
                headers["_status"] = str(status)
                upstream.requests.append((self.path, headers, body))
                upstream.answers.append(status)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def http_upstream() -> Iterator[HttpUpstream]:
    """A threaded HTTP/1.1 server on 127.0.0.1 recording every POST."""
    upstream = HttpUpstream()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(upstream))
    server.daemon_threads = True
    upstream.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield upstream
    finally:
        server.shutdown()
        server.server_close()


def wait_for(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return bool(predicate())
