"""Fixtures every test directory may use."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support import GatewayProcess


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    """``simpul gateway run`` as a process of its own, started, with default settings."""
    gw = GatewayProcess(tmp_path / "gateway")
    await asyncio.to_thread(gw.start)
    try:
        yield gw
    finally:
        gw.stop()
