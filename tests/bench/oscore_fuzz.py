"""The OSCORE layer of a gateway process under 100,000 mutated protected messages: no crash,
no hang, flat memory, and not one reading stored from a mutant.

A ``simpul gateway run`` process speaks only OSCORE (plain CoAP off) to four enrolled boards,
its rate limits lifted so that every datagram reaches the OSCORE layer. First one board's
``CAPTURES`` protected readings requests are sent and acknowledged, as a tap would capture
them; then seeded mutants of them (``tests/oscore_fuzz.py``: CoAP-level mutations, OSCORE
option, ciphertext, outer options, replays, a wrong key under its kid, another board's pack
protected by an enrolled key) go from four sockets on 127.0.0.2 at up to ``RATE`` a second,
slower while the gateway's socket drops datagrams (it is the gateway that is fuzzed, not its
receive buffer).
Every ``PROBE_EVERY`` mutants a probe board sends a valid protected reading from 127.0.0.1
and must have its 2.04 within ``PROBE_DEADLINE_S`` (else a hang is counted; it goes on).
The gateway's processes' RSS (the CoAP process and its children, from ``/proc``) is taken
when it is ready, at the start (after the captures and ``SETTLE_S``: its children have
started), the middle and the end; growth is end - start. The refusals by reason come from
its ``/gateway`` resource (read over OSCORE) and ``<state_dir>/security.json``; the kernel's
drops at its socket from ``/proc/net/udp*``; gateway.db says what was stored, by board.
``SIMPUL_BENCH_OSCORE_MUTATIONS`` sets another count (a smoke run).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import sqlite3
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from gateway.codec import coap
from gateway.oscore import stats_file
from gateway.oscore.keys import BoardKey, KeyMaterial, generate
from tests.bench.load import bench_pack
from tests.bench.proc import session_pids, status_kb
from tests.fuzz_udp import FUZZ_HOST
from tests.oscore_fuzz import Forger, ProtectedMutations
from tests.oscore_requests import (
    CHANGED,
    POST,
    TOKEN_BYTES,
    BoardSender,
    ProtectedRequest,
    readings_options,
)
from tests.support import GatewayProcess

MUTATIONS = 100_000
COUNT_ENV = "SIMPUL_BENCH_OSCORE_MUTATIONS"
#: The highest rate; the pace halves whenever the gateway's socket drops datagrams and
#: grows back by a tenth each 0.1 s it does not, down to MIN_RATE.
RATE = 4000.0
MIN_RATE = 50.0
BATCH = 10
#: The run stops there even if not every mutant was sent.
MAX_SECONDS = 1200.0
SENDERS = 4
CAPTURES = 32
PROBE_EVERY = 1000
PROBE_DEADLINE_S = 5.0
_ACK_TIMEOUT_S = 1.0
SETTLE_S = 3.0
_BASE_S = 1_790_000_000

#: Enrolled boards: whose requests are captured and mutated, another one (its kid borrowed),
#: one that protects other boards' packs, and the probe.
CAPTURED = generate("fz-01", b"\x0a\x01", secret=b"captured board".ljust(32, b"."))
OTHER = generate("fz-02", b"\x0a\x02", secret=b"other board".ljust(32, b"."))
FORGER = generate("forger", b"\x0a\x03", secret=b"forger board".ljust(32, b"."))
PROBE = generate("probe-01", b"\x0a\x10", secret=b"probe board".ljust(32, b"."))
KEYS = [CAPTURED, OTHER, FORGER, PROBE]
#: The gateway's limits lifted: every mutant reaches the OSCORE layer.
LIFTED = {
    f"SIMPUL_GATEWAY__LIMITS__{name}": "1000000"
    for name in ("PEER_RATE", "PEER_BURST", "HOST_RATE", "HOST_BURST", "TOTAL_RATE")
} | {"SIMPUL_GATEWAY__LIMITS__TOTAL_BURST": "1000000"}


class Board:
    """A board that sends protected readings requests one at a time and waits for each."""

    def __init__(self, key: BoardKey, target: tuple[str, int]) -> None:
        self.key = key
        self.sender = BoardSender(key.material)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.connect(target)
        self.mid = int.from_bytes(os.urandom(2), "big")
        self.sent = self.acked = 0

    def protect(self) -> ProtectedRequest:
        """The next readings request (one reading, a time no other request of it uses)."""
        pack = bench_pack(self.key.board_id, _BASE_S + self.sent, 1)
        self.sent += 1
        return self.sender.protect(POST, readings_options(), pack)

    def exchange(self, request: ProtectedRequest, within_s: float) -> tuple[int | None, float]:
        """Send ``request`` (resent each ``_ACK_TIMEOUT_S``) and wait up to ``within_s`` for its
        answer: (the code that counts, or None if none came; seconds it took)."""
        self.mid = (self.mid + 1) & 0xFFFF
        token = os.urandom(TOKEN_BYTES)
        datagram = request.with_ids(self.mid, token)
        started = time.monotonic()
        deadline, resend_at = started + within_s, started + _ACK_TIMEOUT_S
        separate = False
        self.sock.send(datagram)
        while (now := time.monotonic()) < deadline:
            if not separate and now >= resend_at:
                self.sock.send(datagram)
                resend_at = now + _ACK_TIMEOUT_S
            if not select.select([self.sock], [], [], min(resend_at, deadline) - now)[0]:
                continue
            try:
                answer = coap.decode(self.sock.recv(2048))
            except (coap.FormatError, ConnectionRefusedError):
                continue
            if answer.mtype == coap.ACK and answer.mid == self.mid and answer.code == 0:
                separate = True  # an empty ACK: the response comes on its own
            elif answer.token == token and answer.code != 0:
                if answer.mtype == coap.CON:
                    self.sock.send(coap.encode(coap.Datagram(coap.ACK, 0, answer.mid, b"")))
                code = self.sender.answer_code(request, coap.encode(answer))
                self.acked += code == CHANGED
                return code, time.monotonic() - started
        return None, time.monotonic() - started

    def close(self) -> None:
        self.sock.close()


def rss_kb(leader: int) -> dict[int, int]:
    """VmRSS of every process of the gateway's session, by pid."""
    return {pid: status_kb(pid, "VmRSS") for pid in session_pids(leader)}


def socket_drops(port: int) -> int:
    """Datagrams the kernel dropped for the socket bound to ``port`` (its receive buffer was
    full), from ``/proc/net/udp`` and ``udp6``."""
    drops = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    drops += int(fields[-1])
    return drops


def gateway_oscore_fuzz(seconds: float) -> dict[str, Any]:
    """``seconds`` is ignored: the run is MUTATIONS mutants (or ``$SIMPUL_BENCH_OSCORE_MUTATIONS``
    for a shorter run)."""
    count = int(os.environ.get(COUNT_ENV, MUTATIONS))
    with tempfile.TemporaryDirectory(prefix="simpul-oscore-fuzz-") as tmp:
        gateway = GatewayProcess(Path(tmp) / "state", oscore_keys=KEYS, env=LIFTED)
        gateway.start()
        try:
            figures = _fuzz(gateway, count)
        finally:
            gateway.stop()
            gateway.close()
        stored = _stored_by_board(gateway.state_dir / "gateway.db")
        tracebacks = gateway.stderr_text().count("Traceback")
    figures["readings_stored"] = stored
    # One reading per captured request and per probe.
    acked = figures["captured_acked"] + figures["probes_acked"]
    figures["readings_stored_from_mutants"] = sum(stored.values()) - acked
    figures["tracebacks_in_log"] = tracebacks
    return {
        "method": (
            f"{count} seeded mutants (tests/oscore_fuzz.py, seed 1) of {CAPTURES} captured"
            " protected readings requests (already accepted), from"
            f" {SENDERS} sockets on {FUZZ_HOST} at up to {RATE:.0f}/s (halved whenever the"
            " gateway's socket dropped datagrams in the last 0.1 s) to a 'simpul gateway"
            " run' process speaking only OSCORE (plain CoAP off, 4 enrolled boards and a"
            " health reader, rate limits lifted); every"
            f" {PROBE_EVERY} mutants a probe board's valid protected request from 127.0.0.1"
            f" must get its 2.04 within {PROBE_DEADLINE_S:.0f} s (a hang otherwise), and once"
            " more at the end; RSS of the gateway's processes (the CoAP process and its"
            f" children) from /proc when ready, at the start ({SETTLE_S:.0f} s later, after"
            " the captures), middle and end (growth: end - start); datagrams the kernel"
            " dropped at the gateway's socket from /proc/net/udp*; refusals by reason from its"
            " /gateway resource (read over OSCORE) and security.json; readings in gateway.db"
            " by board after it stopped: mutants' = all - captured acked - probes acked"
        ),
        "figures": figures,
    }


def _fuzz(gateway: GatewayProcess, count: int) -> dict[str, Any]:
    assert gateway.proc is not None
    leader = gateway.proc.pid
    target = gateway.address
    captured_board, probe = Board(CAPTURED, target), Board(PROBE, target)
    socks = []
    rss = {"ready": rss_kb(leader)}
    try:
        captures = []
        for _ in range(CAPTURES):
            request = captured_board.protect()
            code, _ = captured_board.exchange(request, 10)
            assert code == CHANGED, f"a request to capture was not taken: {code}"
            captures.append(request.with_ids(0, bytes(TOKEN_BYTES)))
        foreign_pack = bench_pack(CAPTURED.board_id, 1, 3)  # another board's, to the forger
        mutants = ProtectedMutations(
            captures,
            seed=1,
            enrolled_kids=[k.material.sid for k in (OTHER, FORGER, PROBE)],
            wrong_key=BoardSender(
                KeyMaterial(sid=CAPTURED.material.sid, secret=b"not its key".ljust(32, b"."))
            ),
            forger=Forger(BoardSender(FORGER.material), foreign_pack),
        )
        for _ in range(SENDERS):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((FUZZ_HOST, 0))
            sock.setblocking(False)
            socks.append(sock)
        answers: Counter[str] = Counter()
        latencies: list[float] = []
        hangs = 0
        probe_codes: Counter[str] = Counter()
        time.sleep(SETTLE_S)  # the children (writer, batcher, uplinks) done starting
        rss["start"] = rss_kb(leader)
        drops_before = socket_drops(target[1])
        sent = dropped = 0
        started = time.monotonic()
        give_up_at = started + MAX_SECONDS  # bounded in time, whatever happens
        rate, slowest = RATE / 8, RATE  # no burst into a buffer that is still unknown
        next_send = check_at = started
        drops_seen = drops_before
        curve: list[int] = []  # total RSS at each tenth of the run
        while sent < count and time.monotonic() < give_up_at:
            for _ in range(min(BATCH, count - sent)):
                try:
                    socks[sent % SENDERS].sendto(next(mutants), target)
                except BlockingIOError:  # our own buffer full
                    dropped += 1
                sent += 1
                if sent % PROBE_EVERY == 0:
                    code, took = probe.exchange(probe.protect(), PROBE_DEADLINE_S)
                    probe_codes[_code_name(code)] += 1
                    if code is None:
                        hangs += 1
                    else:
                        latencies.append(took)
                if sent == count // 2:
                    rss["middle"] = rss_kb(leader)
                if sent % max(count // 10, 1) == 0:
                    curve.append(sum(rss_kb(leader).values()))
            _drain(socks, answers)
            now = time.monotonic()
            if now >= check_at:  # as fast as the gateway takes them, not faster
                drops_now = socket_drops(target[1])
                rate = max(rate / 2, MIN_RATE) if drops_now > drops_seen else min(rate * 1.1, RATE)
                slowest = min(slowest, rate)
                drops_seen, check_at = drops_now, now + 0.1
            next_send = max(next_send + BATCH / rate, now - 0.1)
            time.sleep(max(next_send - now, 0))
        elapsed = time.monotonic() - started
        time.sleep(2.0)  # the last answers
        _drain(socks, answers)
        drops = socket_drops(target[1]) - drops_before
        final_code, _ = probe.exchange(probe.protect(), PROBE_DEADLINE_S)
        alive = gateway.proc.poll() is None
        time.sleep(1.0)
        rss["end"] = rss_kb(leader)
        health = asyncio.run(gateway.health())
        security_file = stats_file.read(gateway.state_dir) or {}
    finally:
        for sock in socks:
            sock.close()
        captured_board.close()
        probe.close()
    totals = {moment: sum(sample.values()) for moment, sample in rss.items()}
    refused, screened = health["security"]["refused"], health["screened"]
    ordered = sorted(latencies)
    intake = health["intake"]
    return {
        "datagrams": sent,
        "datagrams_not_sent_own_buffer_full": dropped,
        "seconds": round(elapsed, 1),
        "datagrams_per_s": round(sent / elapsed) if elapsed else 0,
        "pace_lowest_per_s": round(slowest),
        "stopped_by_time_bound": sent < count,
        "mutants_by_kind": dict(mutants.kinds),
        "answers": dict(answers),
        "answers_5_xx": sum(n for code, n in answers.items() if code.startswith("5.")),
        "crashes": 0 if alive and final_code == CHANGED else 1,
        "gateway_alive_at_end": alive,
        "final_probe": _code_name(final_code),
        "probes": probe.sent,
        "probe_answers": dict(probe_codes),
        "hangs": hangs,
        "probe_max_ms": round(ordered[-1] * 1000, 1) if ordered else None,
        "probe_p99_ms": round(ordered[int(len(ordered) * 0.99)] * 1000, 1) if ordered else None,
        "rss_mb": {moment: round(kb / 1024, 1) for moment, kb in totals.items()},
        "rss_growth_mb": round((totals["end"] - totals["start"]) / 1024, 1),
        # The first half fills bounded caches (limits.max_dedup_entries answers kept for
        # CoAP deduplication, 10,000 by default); the second half shows a leak, if any.
        "rss_growth_second_half_mb": round((totals["end"] - totals["middle"]) / 1024, 1),
        "dedup_entries_at_end": intake["dedup_entries"],
        "rss_each_tenth_mb": [round(kb / 1024, 1) for kb in curve],
        "rss_coap_process_mb": {
            moment: round(sample.get(leader, 0) / 1024, 1) for moment, sample in rss.items()
        },
        "rss_children_mb": {
            moment: sorted(round(kb / 1024, 1) for pid, kb in sample.items() if pid != leader)
            for moment, sample in rss.items()
        },
        "processes": len(rss["end"]),
        "gateway_socket_drops": drops,
        "refused": refused,
        "refused_security_json": security_file.get("refused"),
        "screened": screened,
        "refused_or_screened": sum(refused.values()) + sum(screened.values()),
        "writer_restarts": intake["writer_restarts"],
        "uplink_restarts": intake["uplink_restarts"],
        "captured_acked": captured_board.acked,
        "probes_acked": probe.acked,
    }


def _drain(socks: list[socket.socket], answers: Counter[str]) -> None:
    """Count what came back to the mutants' sockets, by outer code."""
    for sock in socks:
        while True:
            try:
                data = sock.recv(2048)
            except (BlockingIOError, ConnectionRefusedError):
                break
            try:
                message = coap.decode(data)
            except coap.FormatError:
                answers["undecodable"] += 1
                continue
            answers["RST" if message.mtype == coap.RST else _code_name(message.code)] += 1


def _code_name(code: int | None) -> str:
    if code is None:
        return "none"
    if code < 0:
        return "unverifiable"
    return f"{code >> 5}.{code & 31:02d}"


def _stored_by_board(db_path: Path) -> dict[str, int]:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT board_id, count(*) FROM readings GROUP BY board_id").fetchall()
    finally:
        db.close()
    return {board: n for board, n in rows}
