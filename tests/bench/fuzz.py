"""The gateway under a million hostile datagrams: restarts, answers, memory, a board's latency.

A ``simpul gateway run`` process with its peer rate limit lifted (so every datagram reaches
the parsers) takes seeded mutations of valid requests from 127.0.0.2 as fast as this
machine's loopback carries them at the rate asked, while a well-behaved board posts a
reading every 50 ms from 127.0.0.1 and waits for each answer. Targets (issue 8): no
writer or uplink restart, no 5.00, no 5.03, daemon RSS growth at most 50 MB; the board's
p99 latency is reported.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from tests.fuzz_udp import GOOD_BOARD, run_fuzz
from tests.gateway.test_fuzz import FUZZ_ENV, gateway_stats
from tests.support import GatewayProcess

DATAGRAMS = 1_000_000
RATE = 4000.0


def gateway_fuzz(seconds: float) -> dict[str, Any]:
    """``seconds`` is ignored: the run is a million datagrams at RATE a second."""
    return _fuzz(FUZZ_ENV, DATAGRAMS, limited=False)


def gateway_flood(seconds: float) -> dict[str, Any]:
    """The same hostile traffic for ``seconds``, with the gateway's default rate limits."""
    env = {"SIMPUL_GATEWAY__LIMITS__OPEN_GATEWAY_STATS": "true"}
    return _fuzz(env, int(max(seconds, 30) * RATE), limited=True)


def _fuzz(env: dict[str, str], count: int, *, limited: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="simpul-fuzz-") as tmp:
        gateway = GatewayProcess(Path(tmp) / "state", env=env)
        gateway.start()
        try:
            assert gateway.proc is not None
            report = asyncio.run(
                run_fuzz(gateway.address, gateway.proc.pid, count=count, rate=RATE, seed=1)
            )
            stats = asyncio.run(gateway_stats(gateway.address))
        finally:
            gateway.stop()
            gateway.close()
        upstream = Counter(
            (line["board"], line["time_ms"])
            for line in gateway.upstream()
            if line["board"] == GOOD_BOARD
        )
    intake = stats["intake"]
    assert isinstance(intake, dict)
    return {
        "method": (
            f"{count} seeded mutations of valid CoAP requests (tests/fuzz_udp.py, seed 1)"
            f" at up to {RATE:.0f}/s from 4 sockets on 127.0.0.2 to a 'simpul gateway run'"
            " process ("
            + ("default per-peer rate limits" if limited else "peer rate limit lifted")
            + "), a board posting one reading every 50 ms from 127.0.0.1 beside it; RSS of"
            " the daemon process from /proc before, during and after; restarts from its"
            " statistics; the board's readings checked upstream."
        ),
        "figures": {
            "datagrams": report.sent,
            "seconds": round(report.seconds, 1),
            "datagrams_per_s": round(report.sent / report.seconds) if report.seconds else 0,
            "answers": dict(report.answers),
            "answers_5_00": report.code_count("5.00"),
            "answers_5_03": report.code_count("5.03"),
            "writer_restarts": intake["writer_restarts"],
            "uplink_restarts": intake["uplink_restarts"],
            "screened": stats["screened"],
            "rss_start_mb": round(report.rss_start_kb / 1024, 1),
            "rss_peak_mb": round(report.rss_peak_kb / 1024, 1),
            "rss_end_mb": round(report.rss_end_kb / 1024, 1),
            "rss_growth_mb": round((report.rss_end_kb - report.rss_start_kb) / 1024, 1),
            "good_board_sent": report.good_sent,
            "good_board_acked": report.good_acked,
            "good_board_upstream_once": sum(1 for n in upstream.values() if n == 1),
            "good_board_upstream_repeated": sum(1 for n in upstream.values() if n > 1),
            "good_board_p99_ms": round(report.good_p99_ms, 1),
        },
    }
