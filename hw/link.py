"""An emulated board's Wi-Fi: a real UDP socket on the host, with faults on demand, and the
signal strength the board reports.

Datagrams really travel (to the gateway on loopback); a :class:`LinkFaults` makes the link
lose packets (seeded), delay them, or go down altogether. :class:`Radio` is what
``WLAN.status("rssi")`` says on the chip, the same on both engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from dataclasses import dataclass, field


@dataclass
class LinkFaults:
    loss: float = 0.0  # probability that one datagram, either way, is lost
    delay_ms: int = 0  # added one-way delay
    down: bool = False  # no association: nothing goes out, nothing comes in
    rng: random.Random = field(default_factory=random.Random)

    def lost(self) -> bool:
        return self.down or (self.loss > 0 and self.rng.random() < self.loss)


class Radio:
    """A board's received signal strength: a level set by where the board stands (its seed), a
    few dB of fading from one reading to the next, and nothing while the link is down."""

    def __init__(self, seed: int, faults: LinkFaults) -> None:
        self.level_dbm = -55 - seed % 30
        self._faults = faults
        self._rng = random.Random(seed)

    def rssi(self) -> int | None:
        if self._faults.down:
            return None
        return self.level_dbm + self._rng.randint(-3, 3)


class UdpLink:
    """``board.udp(host, port)``: send(), async recv(timeout_ms), close()."""

    def __init__(self, host: str, port: int, faults: LinkFaults) -> None:
        self._faults = faults
        self._loop = asyncio.get_running_loop()
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        self._sock = socket.socket(family, kind, proto)
        self._sock.setblocking(False)
        self._sock.connect(addr)
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)
        self._loop.add_reader(self._sock.fileno(), self._readable)
        self.sent = 0
        self.received = 0

    def _readable(self) -> None:
        while True:
            try:
                data = self._sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # ICMP port unreachable while the gateway is down: as on Wi-Fi, nothing came.
                return
            if self._faults.lost():
                continue
            if self._faults.delay_ms:
                self._loop.call_later(self._faults.delay_ms / 1000, self._deliver, data)
            else:
                self._deliver(data)

    def _deliver(self, data: bytes) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._inbox.put_nowait(data)
            self.received += 1

    def _transmit(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self._sock.send(data)
            self.sent += 1

    def send(self, data: bytes) -> None:
        if self._faults.lost():
            return
        if self._faults.delay_ms:
            self._loop.call_later(self._faults.delay_ms / 1000, self._transmit, bytes(data))
        else:
            self._transmit(data)

    async def recv(self, timeout_ms: int) -> bytes | None:
        try:
            return await asyncio.wait_for(self._inbox.get(), max(timeout_ms, 0) / 1000)
        except TimeoutError:
            return None

    def close(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
