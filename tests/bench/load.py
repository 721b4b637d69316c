"""A CoAP load generator cheap enough not to be the bottleneck: raw UDP, pre-built datagrams.

It keeps ``window`` confirmable POSTs in flight, each a SenML-CBOR pack of ``readings``
readings with times no other request uses (so a durable gateway really stores every one),
and resends what went unanswered for ``timeout_s``. Answers are handled as a real client
handles them (RFC 7252 §5.2): a piggybacked response (ACK with a code) is matched by message
ID; an empty ACK means a *separate* response will follow, so the request stays in flight
(no more resends) until a CON or NON response with its token arrives, which is ACKed if it
is a CON. Only real error codes (4.xx, 5.xx) count as errors. A separate response that
never comes is given up after twice the retransmission timeout, and a new request takes its
place. At the end it waits for the answers still due before it closes its socket.

What it sends comes from a :class:`RequestSource`: plain CoAP by default
(:class:`PlainReadings`), OSCORE-protected requests with ``tests/bench/oscore_load.py``.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from dataclasses import dataclass
from typing import Protocol

import cbor2


@dataclass
class LoadResult:
    requests: int
    readings: int
    seconds: float
    retransmissions: int
    errors: int
    #: Requests answered in a separate response (an empty ACK first); counted in ``requests``.
    separate_responses: int = 0
    #: Answers that were neither 2.04 nor an error code (not expected from these servers).
    unexpected: int = 0
    #: Requests whose separate response never came (given up after ``2 * timeout_s``).
    abandoned: int = 0
    #: 2.04s that came after the run's end, while it waited for the answers still due (the
    #: server stored those requests' readings too; not counted in ``requests``).
    late: int = 0

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.seconds

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds


def _request(mid: int, token: bytes, payload: bytes) -> bytes:
    # CON POST, token, Uri-Path "readings" (11), Content-Format 112 (12).
    head = struct.pack("!BBH", 0x40 | len(token), 0x02, mid) + token
    options = bytes([0xB8]) + b"readings" + bytes([0x11, 112])
    return head + options + b"\xff" + payload


def bench_pack(board: str, t_s: int, readings: int) -> bytes:
    records = []
    for i in range(readings):
        record = {0: f"r{i}", 1: "ug/m3", 2: 10 + i}
        if i == 0:
            record[-2] = f"urn:dev:simpul:{board}:"
            record[-3] = t_s
        records.append(record)
    return bytes(cbor2.dumps(records))


_CON, _NON, _ACK = 0, 1, 2
_CHANGED = 0x44  # 2.04


def _ack(mid: bytes) -> bytes:
    return bytes([0x60, 0x00]) + mid  # empty ACK (version 1, type ACK, no token)


class RequestSource(Protocol):
    """What the load sends, and how it reads the answers."""

    def datagram(self, mid: int, token: bytes) -> bytes:
        """A new request (a CON), with this message ID and token (4 bytes)."""
        ...

    def answer_code(self, token: bytes, answer: bytes) -> int:
        """The code that tells how the request with ``token`` went, from its ``answer``."""
        ...


class PlainReadings:
    """Unprotected readings requests: a pack from each of ``boards`` boards in turn."""

    def __init__(self, readings: int, boards: int, start_time: int) -> None:
        self.readings, self.boards, self.start_time = readings, boards, start_time
        self.sent = 0

    def datagram(self, mid: int, token: bytes) -> bytes:
        board = f"bench-{self.sent % self.boards:04d}"
        payload = bench_pack(board, self.start_time + self.sent, self.readings)
        self.sent += 1
        return _request(mid, token, payload)

    def answer_code(self, token: bytes, answer: bytes) -> int:
        return answer[1]


def run(
    host: str,
    port: int,
    *,
    seconds: float,
    window: int = 64,
    readings: int = 10,
    boards: int = 200,
    timeout_s: float = 2.0,
    start_time: int | None = None,
    source: RequestSource | None = None,
) -> LoadResult:
    """Load ``host:port`` for ``seconds``; ``readings`` per request counts the readings.
    ``source`` defaults to :class:`PlainReadings` (``boards``, ``start_time``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))
    sock.setblocking(False)
    prefix = os.urandom(2)
    if source is None:
        t0 = start_time if start_time is not None else 1_700_000_000 + (os.getpid() % 1000) * 10**6
        source = PlainReadings(readings, boards, t0)
    # By message ID: (datagram, sent at, token) of requests not yet acknowledged.
    in_flight: dict[int, tuple[bytes, float, bytes]] = {}
    # By token: requests acknowledged with an empty ACK, awaiting their separate response.
    awaiting: dict[bytes, float] = {}
    sent = done = retrans = errors = separate = unexpected = abandoned = late = 0
    mid = 0
    deadline = time.monotonic() + seconds
    started = time.monotonic()

    def send_new() -> None:
        nonlocal sent, mid
        mid = (mid + 1) & 0xFFFF
        token = prefix + mid.to_bytes(2, "big")
        datagram = source.datagram(mid, token)
        in_flight[mid] = (datagram, time.monotonic(), token)
        sock.send(datagram)
        sent += 1

    def answered(token: bytes, data: bytes, counting: bool) -> None:
        nonlocal done, errors, unexpected, late
        code = source.answer_code(token, data)
        if not counting:
            late += code == _CHANGED
            return
        if code == _CHANGED:
            done += 1
        elif code >> 5 in (4, 5):
            errors += 1
        else:
            unexpected += 1
        if time.monotonic() < deadline:
            send_new()

    def receive(counting: bool) -> None:
        nonlocal separate
        while True:
            try:
                data = sock.recv(2048)
            except BlockingIOError:
                return
            if len(data) < 4:
                continue
            kind, code, token = data[0] >> 4 & 3, data[1], data[4 : 4 + (data[0] & 0x0F)]
            if kind == _ACK:
                entry = in_flight.pop(int.from_bytes(data[2:4], "big"), None)
                if entry is None:
                    continue  # a duplicate ACK of a retransmission
                if code == 0:  # empty ACK: the response comes separately
                    awaiting[entry[2]] = time.monotonic()
                else:
                    answered(entry[2], data, counting)
            elif kind in (_CON, _NON):
                if kind == _CON:
                    sock.send(_ack(data[2:4]))
                if awaiting.pop(token, None) is not None:
                    separate += counting
                    answered(token, data, counting)

    while len(in_flight) < window:
        send_new()
    while time.monotonic() < deadline:
        if select.select([sock], [], [], 0.05)[0]:
            receive(counting=True)
        now = time.monotonic()
        for key, (datagram, at, token) in list(in_flight.items()):
            if now - at > timeout_s:
                sock.send(datagram)
                in_flight[key] = (datagram, now, token)
                retrans += 1
        for token, at in list(awaiting.items()):
            if now - at > 2 * timeout_s:  # as a board would: give up, send a new batch
                del awaiting[token]
                abandoned += 1
                send_new()
    elapsed = time.monotonic() - started
    # Stay for the answers still due before closing: a closed port makes the server's
    # answers bounce (ICMP port unreachable), which would disturb whoever measures next.
    drain_until = time.monotonic() + timeout_s
    while (in_flight or awaiting) and time.monotonic() < drain_until:
        if select.select([sock], [], [], 0.05)[0]:
            receive(counting=False)
    sock.close()
    return LoadResult(
        done, done * readings, elapsed, retrans, errors, separate, unexpected, abandoned, late
    )
