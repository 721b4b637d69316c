"""The gate in front of the CoAP stack: every datagram is screened before aiocoap sees it.

A gateway sits on a field Wi-Fi network that anyone in range can reach, so the stack only
ever receives what RFC 7252 lets a server process, at a rate the gateway can hold:

* :class:`Gate` checks each datagram with the pure codec :mod:`gateway.codec.coap`: a format
  error gets RST (CON) or nothing; a bad, unknown critical or proxy option, or a failed
  precondition gets its 4.02, 5.05 or 4.12 straight from here, its diagnostic cut so the
  answer is never larger than :data:`AMPLIFICATION` times the request; peers that send
  faster than their share are dropped (token buckets per source address and in total).
* :class:`BoundedMessageManager` is aiocoap's message layer with its deduplication cache
  bounded in entries (aiocoap keeps every exchange, with a timer each, for about four
  minutes: memory in proportion to traffic). A request evicted early and then repeated is
  processed again, which the store makes harmless (a reading is stored once).
* :class:`GatedUDP6` is aiocoap's UDP transport with the gate in its receive path; the
  server context (:class:`gateway.daemon.ServerContext`) builds its transport with both.

Each kind of refusal is counted by reason, and logged once, then at most once a minute
with how many came meanwhile: no traceback for a peer's mistake.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from aiocoap.messagemanager import MessageManager
from aiocoap.numbers.types import CON as COAP_CON
from aiocoap.transports.udp6 import MessageInterfaceUDP6

from gateway.codec import coap

log = logging.getLogger(__name__)

#: An answer to an unauthenticated request is at most this many times its size.
AMPLIFICATION: Final = 3
#: The smallest budget for an answer: a header, a token and a few bytes of diagnostic.
_MIN_ANSWER_BYTES: Final = 24
_LOG_EVERY_S: Final = 60.0


@dataclass
class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class RateLimitedLog:
    """One log line per kind of trouble, then at most one a minute saying how many since."""

    def __init__(self, logger: logging.Logger, clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._clock = clock
        self._last: dict[str, float] = {}
        self._since: Counter[str] = Counter()

    def warning(self, kind: str, message: str) -> None:
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < _LOG_EVERY_S:
            self._since[kind] += 1
            return
        more = self._since.pop(kind, 0)
        self._last[kind] = now
        suffix = f" ({more} more since the last report)" if more else ""
        self._log.warning("%s: %s%s", kind, message, suffix)


class QuietLogFilter(logging.Filter):
    """Lets each kind of log line (its format string) through once a minute, with a count.

    Installed on the CoAP stack's logger, whose warnings about a peer's odd messages would
    otherwise write a line per datagram under a flood.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._last: dict[str, float] = {}
        self._since: Counter[str] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.exc_info is None:
            return True
        kind = str(record.msg)
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < _LOG_EVERY_S:
            self._since[kind] += 1
            return False
        self._last[kind] = now
        more = self._since.pop(kind, 0)
        if more:
            record.msg = f"{record.msg} ({more} more like it since the last report)"
        return True


class Gate:
    """Screens datagrams: what to pass to the stack, what to answer, what to drop.

    ``peer_rate``/``peer_burst`` limit each source (host and port: one board's socket),
    ``host_rate``/``host_burst`` each host whatever its ports (boards behind one NAT, or one
    machine's flood from many ports), ``total_rate``/``total_burst`` all of them together;
    at most ``max_peers`` sources and hosts are tracked (the least recent forgotten first).
    """

    def __init__(
        self,
        *,
        peer_rate: float,
        peer_burst: float,
        total_rate: float,
        total_burst: float,
        host_rate: float | None = None,
        host_burst: float | None = None,
        max_peers: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.peer_rate, self.peer_burst = peer_rate, peer_burst
        self.host_rate = host_rate if host_rate is not None else total_rate
        self.host_burst = host_burst if host_burst is not None else total_burst
        self.max_peers = max_peers
        self._clock = clock
        self._rng = rng or random.Random()
        self._total = TokenBucket(total_rate, total_burst, total_burst, clock())
        self._peers: OrderedDict[object, TokenBucket] = OrderedDict()
        #: Datagrams not passed on, by reason (``rate_limited``, ``format_error``...).
        self.refused: Counter[str] = Counter()
        self.log = RateLimitedLog(log)

    def screen(self, data: bytes, host: str, port: int = 0) -> tuple[bytes | None, bytes | None]:
        """(datagram for the stack or None, answer to send back or None)."""
        if not self._admit(host, port):
            self.refused["rate_limited"] += 1
            self.log.warning("rate_limited", f"dropping datagrams from {host}")
            return None, None
        try:
            message = coap.decode(data)
        except coap.FormatError as exc:
            self.refused["format_error"] += 1
            self.log.warning("format_error", f"{host}: {exc}")
            mid = coap.mid_of(data)
            return None, coap.reset(mid) if mid is not None else None
        if not message.is_request:
            if not coap.strings_are_utf8(message):  # a response or ping the stack can't parse
                self.refused["format_error"] += 1
                self.log.warning("format_error", f"{host}: a string option is not UTF-8")
                return None, None
            return data, None
        verdict = coap.check_request(message)
        refusal = verdict.refusal
        if refusal is not None:
            self.refused[refusal.reason] += 1
            self.log.warning(refusal.reason, f"{host}: {refusal.diagnostic}")
            budget = max(AMPLIFICATION * len(data), _MIN_ANSWER_BYTES)
            return None, coap.answer(
                message, refusal.code, refusal.diagnostic, budget=budget, rng=self._rng
            )
        if verdict.ignored:
            return coap.encode(coap.without(message, verdict.ignored)), None
        return data, None

    def _admit(self, host: str, port: int) -> bool:
        now = self._clock()
        source = self._bucket((host, port), self.peer_rate, self.peer_burst, now)
        machine = self._bucket(host, self.host_rate, self.host_burst, now)
        return source.take(now) and machine.take(now) and self._total.take(now)

    def _bucket(self, key: object, rate: float, burst: float, now: float) -> TokenBucket:
        bucket = self._peers.get(key)
        if bucket is None:
            bucket = self._peers[key] = TokenBucket(rate, burst, burst, now)
            if len(self._peers) > self.max_peers:
                self._peers.popitem(last=False)
        else:
            self._peers.move_to_end(key)
        return bucket


class BoundedMessageManager(MessageManager):  # type: ignore[misc]
    """aiocoap's message layer with a deduplication cache of at most ``max_entries``.

    aiocoap remembers every request's (peer, message ID) and its response for
    EXCHANGE_LIFETIME (about 247 s), with a timer each; here they live in one ordered
    dict, expired as new ones come and the oldest evicted past the bound.
    """

    max_entries: int = 10_000

    def __init__(self, token_manager: Any) -> None:
        super().__init__(token_manager)
        self._recent: OrderedDict[tuple[Any, int], list[Any]] = OrderedDict()
        self.evicted = 0

    def _deduplicate_message(self, message: Any) -> bool:
        key = (message.remote, message.mid)
        now = time.monotonic()
        entry = self._recent.get(key)
        if entry is not None and entry[0] > now:
            if message.mtype is COAP_CON and entry[1] is not None:
                self._send_initially(entry[1])
            return True
        recent = self._recent
        while recent:
            oldest = next(iter(recent.values()))
            if oldest[0] > now and len(recent) < self.max_entries:
                break
            if oldest[0] > now:
                self.evicted += 1
            recent.popitem(last=False)
        recent[key] = [now + message.transport_tuning.EXCHANGE_LIFETIME, None]
        return False

    def _store_response_for_duplicates(self, message: Any) -> None:
        entry = self._recent.get((message.remote, message.mid))
        if entry is not None:
            entry[1] = message


class GatedUDP6(MessageInterfaceUDP6):  # type: ignore[misc]
    """aiocoap's UDP transport, with :class:`Gate` screening every datagram first."""

    gate: Gate

    def datagram_msg_received(self, data: bytes, ancdata: Any, flags: int, address: Any) -> None:
        host = str(address[0]).removeprefix("::ffff:")
        passed, answer = self.gate.screen(data, host, address[1])
        if answer is not None:
            pktinfo = [
                (level, kind, value)
                for level, kind, value in ancdata
                if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO
            ]
            try:
                self.transport.sendmsg(answer, pktinfo, 0, address)
            except OSError as exc:
                self.gate.log.warning("answer_failed", f"{host}: {exc}")
        if passed is not None:
            try:
                super().datagram_msg_received(passed, ancdata, flags, address)
            except Exception as exc:  # the gate let through what the stack cannot take
                self.gate.refused["stack_error"] += 1
                self.gate.log.warning("stack_error", f"{host}: {type(exc).__name__}: {exc}")
