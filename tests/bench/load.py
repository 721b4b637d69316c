"""A CoAP load generator cheap enough not to be the bottleneck: raw UDP, pre-built datagrams.

It keeps ``window`` confirmable POSTs in flight, each a SenML-CBOR pack of ``readings``
readings with times no other request uses (so a durable gateway really stores every one),
matches 2.04 answers by message ID, and resends what went unanswered for ``timeout_s``.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from dataclasses import dataclass

import cbor2


@dataclass
class LoadResult:
    requests: int
    readings: int
    seconds: float
    retransmissions: int
    errors: int

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


def _pack(board: str, t_s: int, readings: int) -> bytes:
    records = []
    for i in range(readings):
        record = {0: f"r{i}", 1: "ug/m3", 2: 10 + i}
        if i == 0:
            record[-2] = f"urn:dev:simpul:{board}:"
            record[-3] = t_s
        records.append(record)
    return bytes(cbor2.dumps(records))


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
) -> LoadResult:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))
    sock.setblocking(False)
    prefix = os.urandom(2)
    t0 = start_time if start_time is not None else 1_700_000_000 + (os.getpid() % 1000) * 10**6
    in_flight: dict[int, tuple[bytes, float]] = {}
    sent = done = retrans = errors = 0
    mid = 0
    deadline = time.monotonic() + seconds
    started = time.monotonic()

    def send_new() -> None:
        nonlocal sent, mid
        mid = (mid + 1) & 0xFFFF
        board = f"bench-{sent % boards:04d}"
        datagram = _request(mid, prefix + mid.to_bytes(2, "big"), _pack(board, t0 + sent, readings))
        in_flight[mid] = (datagram, time.monotonic())
        sock.send(datagram)
        sent += 1

    while len(in_flight) < window:
        send_new()
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        ready, _, _ = select.select([sock], [], [], 0.05)
        if ready:
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    break
                if len(data) < 4:
                    continue
                answered = int.from_bytes(data[2:4], "big")
                if answered not in in_flight or data[0] >> 4 & 3 != 2:
                    continue
                del in_flight[answered]
                if data[1] == 0x44:  # 2.04
                    done += 1
                else:
                    errors += 1
                if time.monotonic() < deadline:
                    send_new()
        now = time.monotonic()
        for key, (datagram, at) in list(in_flight.items()):
            if now - at > timeout_s:
                sock.send(datagram)
                in_flight[key] = (datagram, now)
                retrans += 1
    elapsed = time.monotonic() - started
    sock.close()
    return LoadResult(done, done * readings, elapsed, retrans, errors)
