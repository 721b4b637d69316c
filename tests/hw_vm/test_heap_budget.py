"""The firmware's heap on the real MicroPython VM stays within the ESP32 budget (48 KB), in
normal cycles and while it sends a full flash backlog; ``nox -s firmware`` runs this."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hw.engines.micropython import ESP32_HEAP
from hw.firmware_tools.heap import HEAP_BUDGET, measure_heap
from tests.support import GatewayProcess


@pytest.mark.slow
async def test_firmware_heap_within_budget_on_micropython_vm(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "gateway")
    await asyncio.to_thread(gateway.start)
    try:
        figures = await asyncio.wait_for(measure_heap(tmp_path / "boards", gateway.address), 90)
    finally:
        gateway.stop()
    assert figures.backlog_records >= 200, figures  # a full ring buffer went out
    assert figures.bridge > 0
    assert figures.code > 10_000, figures  # the probe saw the firmware load
    assert 0 < figures.runtime_peak <= HEAP_BUDGET, figures
    # Code and working set together still fit the heap of a real board.
    assert figures.code + figures.runtime_peak <= ESP32_HEAP, figures
