"""A seeded UDP fuzzer for a live gateway, with a well-behaved board beside it.

Used by the fuzz test (bounded to about a minute) and by ``nox -s bench`` (a million
datagrams). Hostile datagrams are mutations of valid requests (bit flips, byte changes,
cuts, insertions, repeated pieces, injected options, other codes, types and token lengths)
sent from their own loopback address; the board posts SenML packs with sequence numbers
from 127.0.0.1 as the firmware does, waiting for each answer. The report says what the
gateway answered, how its memory went, and how long the board waited.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cbor2
from aiocoap import POST, Context, Message

from gateway.codec import coap

FUZZ_HOST = "127.0.0.2"
GOOD_BOARD = "good-01"
_BASE_S = 1_790_000_000


def rss_kb(pid: int) -> int:
    """Resident memory of a process, in KiB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def _request(
    code: int, path: tuple[bytes, ...], payload: bytes, cf: int | None, **kw: int
) -> bytes:
    options = [coap.Option(11, p) for p in path]
    if cf is not None:
        options.append(coap.Option(12, cf.to_bytes(max((cf.bit_length() + 7) // 8, 1), "big")))
    return coap.encode(
        coap.Datagram(
            kw.get("mtype", coap.CON), code, kw.get("mid", 1), b"\x11\x22", tuple(options), payload
        )
    )


def templates() -> list[bytes]:
    """Valid requests of every kind the gateway takes, to mutate."""
    pack = [
        {-2: "urn:dev:simpul:fz-01:", -3: _BASE_S, 0: "pm2_5", 1: "ug/m3", 2: 12.5},
        {0: "pm10", 6: 1, 2: 20},
        {0: "t", 6: 2, 2: 29.5, 1: "Cel"},
    ]
    json_pack = b'[{"bn":"urn:dev:simpul:fz-02:","bt":1790000000,"n":"t","u":"Cel","v":21.5}]'
    health = {"board": "fz-01", "uptime_s": 12, "boots": 3, "rssi": -70, "sensors": {"pms": 0}}
    ota = {"seq": 7, "state": "downloading", "detail": "3/40"}
    return [
        _request(2, (b"readings",), cbor2.dumps(pack), 112),
        _request(2, (b"readings",), json_pack, 110),
        _request(2, (b"health",), cbor2.dumps(health), 60),
        _request(2, (b"health",), b'{"board":"fz-03","boots":1}', 50),
        _request(1, (b".well-known", b"core"), b"", None),
        _request(1, (b"gateway",), b"", None, mtype=coap.NON),
        _request(2, (b"readings",), cbor2.dumps(pack)[:64], 112) + b"",
        _request(1, (b"ota", b"7", b"manifest"), b"", None),
        _request(1, (b"ota", b"7", b"app.mpy"), b"", None),
        _request(2, (b"health",), cbor2.dumps({**health, "ota": ota}), 60),
    ]


def mutate_once(data: bytearray, rng: random.Random) -> None:
    """One CoAP-level mutation of ``data`` in place: a flipped bit, a random byte, a cut,
    inserted or repeated bytes, another type, token length or code, an injected option,
    a garbage payload, or CBOR that declares a huge length or nests deep."""
    kind = rng.randrange(9)
    at = rng.randrange(len(data) or 1)
    if kind == 0 and data:  # flip a bit
        data[at] ^= 1 << rng.randrange(8)
    elif kind == 1 and data:  # a random byte
        data[at] = rng.randrange(256)
    elif kind == 2:  # cut
        del data[rng.randrange(len(data) + 1) :]
    elif kind == 3:  # insert random bytes
        data[at:at] = rng.randbytes(rng.randrange(1, 16))
    elif kind == 4 and data:  # repeat a piece
        piece = data[at : at + rng.randrange(1, 32)]
        data[at:at] = piece
    elif kind == 5 and len(data) >= 4:  # another type, token length or code
        data[0] = 0x40 | rng.randrange(4) << 4 | rng.randrange(16)
        if rng.random() < 0.5:
            data[1] = rng.randrange(256)
    elif kind == 6:  # an injected option (delta and length nibbles, any value)
        data[4:4] = bytes([rng.randrange(256)]) + rng.randbytes(rng.randrange(0, 20))
    elif kind == 7:  # garbage payload after a marker
        data += b"\xff" + rng.randbytes(rng.randrange(0, 64))
    else:  # a huge declared CBOR length, or deep nesting
        data += rng.choice((b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff", b"\x81" * 200))


def mutations(seed: int) -> Iterator[bytes]:
    """An endless, reproducible stream of hostile datagrams."""
    rng = random.Random(seed)
    bases = templates()
    while True:
        data = bytearray(rng.choice(bases))
        data[2:4] = rng.randrange(1 << 16).to_bytes(2, "big")  # a fresh message ID
        for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
            mutate_once(data, rng)
        yield bytes(data[:1400])


@dataclass
class FuzzReport:
    """What one fuzz run sent, what came back, and what it cost."""

    sent: int = 0
    seconds: float = 0.0
    answers: Counter[str] = field(default_factory=Counter)
    rss_start_kb: int = 0
    rss_end_kb: int = 0
    rss_peak_kb: int = 0
    good_sent: int = 0
    good_acked: int = 0
    good_readings: set[tuple[str, int]] = field(default_factory=set)
    good_latencies_ms: list[float] = field(default_factory=list)

    def code_count(self, prefix: str) -> int:
        return sum(n for code, n in self.answers.items() if code.startswith(prefix))

    @property
    def good_p99_ms(self) -> float:
        ordered = sorted(self.good_latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0


async def _listen(sock: socket.socket, report: FuzzReport, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 0.2)
        except TimeoutError:
            continue
        try:
            message = coap.decode(data)
        except coap.FormatError:
            report.answers["undecodable"] += 1
            continue
        kind = {coap.RST: "RST"}.get(message.mtype)
        report.answers[kind or f"{message.code >> 5}.{message.code & 31:02d}"] += 1


async def _good_board(
    target: tuple[str, int], report: FuzzReport, stop: asyncio.Event, interval_s: float
) -> None:
    context = await Context.create_client_context()
    seq = 0
    try:
        while not stop.is_set():
            at = _BASE_S + seq
            pack = [{-2: f"urn:dev:simpul:{GOOD_BOARD}:", -3: at, 0: "pm2_5", 2: seq % 500}]
            request = Message(
                code=POST,
                uri=f"coap://{target[0]}:{target[1]}/readings?s={seq}&n=1",
                payload=cbor2.dumps(pack),
                content_format=112,
            )
            report.good_sent += 1
            started = time.monotonic()
            try:
                response = await asyncio.wait_for(context.request(request).response, 60)
            except Exception:
                response = None
            if response is not None and response.code.is_successful():
                report.good_acked += 1
                report.good_readings.add((GOOD_BOARD, at * 1000))
                report.good_latencies_ms.append((time.monotonic() - started) * 1000)
            seq += 1
            await asyncio.sleep(interval_s)
    finally:
        await context.shutdown()


async def run_fuzz(
    target: tuple[str, int],
    pid: int,
    *,
    count: int,
    rate: float,
    seed: int,
    senders: int = 4,
    board_interval_s: float = 0.05,
) -> FuzzReport:
    """Send ``count`` hostile datagrams at about ``rate`` a second while a board reports."""
    report = FuzzReport(rss_start_kb=rss_kb(pid))
    report.rss_peak_kb = report.rss_start_kb
    socks = []
    for _ in range(senders):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((FUZZ_HOST, 0))
        sock.setblocking(False)
        socks.append(sock)
    stop = asyncio.Event()
    listeners = [asyncio.create_task(_listen(s, report, stop)) for s in socks]
    board = asyncio.create_task(_good_board(target, report, stop, board_interval_s))
    stream = mutations(seed)
    started = time.monotonic()
    try:
        batch = max(int(rate / 100), 1)
        while report.sent < count:
            for _ in range(min(batch, count - report.sent)):
                with contextlib.suppress(BlockingIOError):  # our own buffer full: skip one
                    socks[report.sent % senders].sendto(next(stream), target)
                report.sent += 1
            due = started + report.sent / rate
            await asyncio.sleep(max(due - time.monotonic(), 0))
            if report.sent % (batch * 100) < batch:
                report.rss_peak_kb = max(report.rss_peak_kb, rss_kb(pid))
        report.seconds = time.monotonic() - started
        await asyncio.sleep(2.0)  # the last answers, the board's last reading
    finally:
        stop.set()
        await asyncio.gather(board, *listeners, return_exceptions=True)
        for sock in socks:
            sock.close()
    report.rss_end_kb = rss_kb(pid)
    report.rss_peak_kb = max(report.rss_peak_kb, report.rss_end_kb)
    return report
