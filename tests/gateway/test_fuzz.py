"""A live gateway process under a minute of seeded hostile datagrams, a board beside it.

It must not restart a process, answer a client's error with 5.xx, grow its memory beyond a
bound, or lose or repeat a reading of the well-behaved board. ``nox -s bench`` runs the
same fuzzer for a million datagrams (``tests/bench/fuzz.py``).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest
from aiocoap import GET, Context, Message

from tests.fuzz_udp import GOOD_BOARD, run_fuzz
from tests.support import GatewayProcess, eventually

#: A flood's own rate, high enough that every datagram reaches the parsers.
FUZZ_ENV = {
    "SIMPUL_GATEWAY__LIMITS__PEER_RATE": "1000000",
    "SIMPUL_GATEWAY__LIMITS__PEER_BURST": "1000000",
    "SIMPUL_GATEWAY__LIMITS__HOST_RATE": "1000000",
    "SIMPUL_GATEWAY__LIMITS__HOST_BURST": "1000000",
    "SIMPUL_GATEWAY__LIMITS__OPEN_GATEWAY_STATS": "true",
}
RSS_GROWTH_LIMIT_KB = 50 * 1024


async def gateway_stats(address: tuple[str, int]) -> dict[str, object]:
    context = await Context.create_client_context()
    try:
        uri = f"coap://{address[0]}:{address[1]}/gateway"
        response = await context.request(Message(code=GET, uri=uri)).response
        stats: dict[str, object] = json.loads(response.payload)
        return stats
    finally:
        await context.shutdown()


@pytest.mark.slow
async def test_twenty_seconds_of_hostile_datagrams_stop_nothing_and_lose_nothing(
    tmp_path: Path,
) -> None:
    gateway = GatewayProcess(tmp_path / "state", env=FUZZ_ENV)
    await asyncio.to_thread(gateway.start)
    try:
        assert gateway.proc is not None
        report = await run_fuzz(gateway.address, gateway.proc.pid, count=30_000, rate=1500, seed=8)
        stats = await gateway_stats(gateway.address)

        def upstream_has_every_acked_reading() -> bool:
            have = {(line["board"], line["time_ms"]) for line in gateway.upstream()}
            return report.good_readings <= have

        # The file uplink may still be writing the board's last reading out.
        assert await eventually(upstream_has_every_acked_reading, 30)
    finally:
        gateway.stop()
        gateway.close()
    intake = stats["intake"]
    assert isinstance(intake, dict)
    assert (intake["writer_restarts"], intake["uplink_restarts"]) == (0, 0)
    assert report.code_count("5.00") == 0, report.answers
    assert report.code_count("5.03") == 0, report.answers
    assert report.code_count("4.") > 1000  # the parsers really were reached
    growth = report.rss_end_kb - report.rss_start_kb
    assert growth <= RSS_GROWTH_LIMIT_KB, f"RSS grew {growth} KiB: {report}"
    log = gateway.stderr_text()
    assert "Traceback" not in log
    # One line per kind of bad input, then one a minute: not one per datagram.
    assert len(log.splitlines()) < 100, log[-3000:]
    # Every reading the board saw acknowledged is stored, and upstream exactly once.
    assert report.good_acked == report.good_sent > 100
    upstream = Counter(
        (line["board"], line["time_ms"])
        for line in gateway.upstream()
        if line["board"] == GOOD_BOARD
    )
    assert set(upstream) == report.good_readings
    assert set(upstream.values()) == {1}
