"""Fixtures for gateway tests: an in-process gateway, a CoAP client, the daemon as a process."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import pytest
from aiocoap import POST, Context, Message

from gateway.config import GatewayConfig, load_config
from gateway.daemon import Gateway
from tests.support import GatewayProcess


class HoldCommit:
    """A ``before_commit`` hook: the writer process stops right before COMMIT until released.

    It travels to the writer process, so its events are the ``spawn`` context's.
    """

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.held = context.Event()
        self.release = context.Event()

    def __call__(self) -> None:  # runs in the writer process, just before COMMIT
        self.held.set()
        self.release.wait(10)


def gateway_config(state_dir: Path, **overrides: Any) -> GatewayConfig:
    """A config for tests: 127.0.0.1 on an ephemeral port, state in ``state_dir``, plain CoAP
    on (the lab flag) for the tests of what lies behind OSCORE; the OSCORE tests turn it off."""
    values: dict[str, Any] = {
        "security.plain_coap": True,
        "state_dir": state_dir,
        "bind.host": "127.0.0.1",
        "bind.port": 0,
        "gateway_id": "gw-test",
        "site": "test-site",
    }
    values.update(overrides)
    return load_config(env={}, overrides=values)


def senml_pack(
    board: str = "b1",
    *,
    start_s: int = 1_700_000_000,
    names: tuple[str, ...] = ("pm2_5",),
    value: float = 12.5,
) -> list[dict[int, Any]]:
    """A SenML-CBOR pack (integer labels) as a board sends it: bn and bt on the first record."""
    records: list[dict[int, Any]] = []
    for i, name in enumerate(names):
        record: dict[int, Any] = {0: name, 1: "ug/m3", 2: value + i}
        if i == 0:
            record[-2] = f"urn:dev:simpul:{board}:"
            record[-3] = start_s
        records.append(record)
    return records


def db_rows(state_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    """Run a query on a gateway's database, read-only."""
    db = sqlite3.connect(f"file:{state_dir / 'gateway.db'}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


@dataclass
class Client:
    """An aiocoap client pointed at one gateway."""

    context: Context
    host: str
    port: int

    def uri(self, path: str) -> str:
        return f"coap://{self.host}:{self.port}/{path.lstrip('/')}"

    async def post(
        self, path: str, payload: bytes, content_format: int | None = 112, query: str = ""
    ) -> Message:
        request = Message(code=POST, uri=self.uri(path) + query, payload=payload)
        if content_format is not None:
            request.opt.content_format = content_format
        response: Message = await self.context.request(request).response
        return response

    async def post_pack(self, pack: object, query: str = "") -> Message:
        return await self.post("readings", cbor2.dumps(pack), 112, query)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    """A started in-process gateway with its state in ``tmp_path / "state"``."""
    gw = Gateway(gateway_config(tmp_path / "state"))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[Client]:
    """A CoAP client for the ``gateway`` fixture."""
    context = await Context.create_client_context()
    host, port = gateway.bound_address
    try:
        yield Client(context, host, port)
    finally:
        await context.shutdown()


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[GatewayProcess]:
    """A daemon process (not started) with its state in ``tmp_path / "state"``."""
    process = GatewayProcess(tmp_path / "state", port=0, gateway_id="gw-proc", site=None)
    try:
        yield process
    finally:
        process.close()
