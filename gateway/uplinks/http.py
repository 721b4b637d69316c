"""The HTTP(S) batch uplink: each batch one POST, in chain order, on a kept-alive connection.

    POST <url>
    Content-Type: application/cose; cose-type="cose-sign1"
    Idempotency-Key: <gateway>-<seq>
    X-Simpul-Batch-Digest: <hex SHA-256 of the body>

2xx means delivered; so does 409 (the server already has this idempotency key, from an
earlier attempt whose answer was lost). Anything else, a 5xx, a timeout or a network error,
is an :class:`~gateway.errors.UplinkError`: the uplink backs off and sends the batch again
with the same key. One request at a time, so the server receives batches in chain order.
"""

from __future__ import annotations

import http.client
from typing import Final
from urllib.parse import urlsplit

from gateway.errors import ConfigError, UplinkError
from gateway.store.batch_log import StoredBatch
from gateway.uplinks.delivery import Sender

UPLINK_NAME: Final = "http"
CONTENT_TYPE: Final = 'application/cose; cose-type="cose-sign1"'


def idempotency_key(gateway_id: str, seq: int) -> str:
    """The key a batch is POSTed with, the same on every attempt."""
    return f"{gateway_id}-{seq}"


class HttpSender(Sender[StoredBatch]):
    """POSTs batches to one URL (``http://`` or ``https://``; system CA store for TLS)."""

    def __init__(self, url: str, *, gateway_id: str, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"HTTP uplink URL must be http(s)://host[:port]/path, got {url!r}")
        self.url = url
        self.gateway_id = gateway_id
        self.timeout_s = timeout_s
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._connection: http.client.HTTPConnection | None = None
        self._done: list[int] = []
        #: Status of every answer, in order (for health and tests).
        self.statuses: list[int] = []

    def open(self) -> None:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        self._connection = cls(self._host, self._port, timeout=self.timeout_s)
        self._done.clear()

    def send(self, batch: StoredBatch) -> None:
        connection = self._connection
        if connection is None:
            raise UplinkError("HTTP uplink is not open")
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Idempotency-Key": idempotency_key(self.gateway_id, batch.seq),
            "X-Simpul-Batch-Digest": batch.digest.hex(),
        }
        try:
            connection.request("POST", self._path, body=batch.encoded, headers=headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise UplinkError(f"POST {self.url}: {exc or type(exc).__name__}") from None
        self.statuses.append(response.status)
        if 200 <= response.status < 300 or response.status == 409:
            self._done.append(batch.seq)
            if response.will_close:
                connection.close()  # http.client reconnects on the next request
            return
        raise UplinkError(f"POST {self.url}: HTTP {response.status} {response.reason}")

    def confirmed(self, timeout_s: float) -> list[int]:
        done, self._done = self._done, []
        return done

    def close(self, *, graceful: bool) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._done.clear()


__all__ = ["CONTENT_TYPE", "UPLINK_NAME", "HttpSender", "idempotency_key"]
