"""The OSCORE benchmarks' requests, protected before the run, are what the gateway takes:
``gateway_vs_bare_oscore`` measures real ingest, not refusals."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.daemon import Gateway
from tests.bench import load
from tests.bench.oscore_load import ProtectedReadings, oscore_bench_keys
from tests.gateway.conftest import db_rows, gateway_config
from tests.gateway.oscore_support import write_keys_file


async def test_pre_protected_load_is_acknowledged_and_stored_reading_for_reading(
    tmp_path: Path,
) -> None:
    keys = oscore_bench_keys(3)
    keys_file = write_keys_file(tmp_path / "keys.json", keys)
    gw = Gateway(
        gateway_config(
            tmp_path / "state", **{"security.plain_coap": False, "security.keys_file": keys_file}
        )
    )
    await gw.start()
    try:
        source = ProtectedReadings(keys, readings=4, start_time=1_700_000_000)
        source.prepare(2000)
        host, port = gw.bound_address
        result = await asyncio.to_thread(
            load.run, host, port, seconds=0.5, window=6, readings=4, source=source
        )
        refused = gw.stats()["security"]["refused"]
    finally:
        await gw.stop()
    assert result.requests > 0
    assert (result.errors, result.unexpected, result.retransmissions) == (0, 0, 0)
    assert not any(refused.values()), refused
    stored = db_rows(gw.config.state_dir, "SELECT board_id, count(*) FROM readings GROUP BY 1")
    assert sum(n for _, n in stored) == (result.requests + result.late) * 4
    assert {board for board, _ in stored} == {key.board_id for key in keys}
