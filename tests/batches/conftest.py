"""Fixtures for batch tests: fixed keys, outbox rows, chains of batches, a real Mosquitto."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.batches.format import ChainState, build
from gateway.codec.senml import Value
from tests.mosquitto import Broker, running_mosquitto

#: RFC 8032 §7.1 TEST 1 secret key, so vectors stay fixed.
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
START_MS = 1_700_000_000_000


class Row(NamedTuple):
    """An outbox row as the store hands it to an uplink."""

    id: int
    board_id: str
    name: str
    unit: str | None
    kind: str
    value: Value
    time_ms: int
    received_ms: int


def rows(count: int, *, first_id: int = 1, board: str = "aq-07") -> list[Row]:
    """``count`` PM2.5 readings, one second apart, outbox ids from ``first_id``."""
    return [
        Row(i, board, "pm2_5", "ug/m3", "v", 10.0 + i / 4, START_MS + i * 1000, START_MS + i * 1000)
        for i in range(first_id, first_id + count)
    ]


def chain(
    key: Ed25519PrivateKey,
    count: int,
    *,
    per_batch: int = 3,
    gateway: str = "gw-1",
    state: ChainState | None = None,
) -> tuple[list[bytes], ChainState]:
    """``count`` consecutive batches of ``per_batch`` readings each, signed by ``key``."""
    state = state or ChainState()
    batches = []
    for _ in range(count):
        first = state.seq * per_batch + 1
        encoded, state = build(
            key,
            state,
            rows(per_batch, first_id=first),
            START_MS + 10_000_000 + state.seq,
            gateway=gateway,
            site="kec-a",
        )
        batches.append(encoded)
    return batches, state


def write_public_key(path: Path, key: Ed25519PrivateKey) -> Path:
    path.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return path


@pytest.fixture
def rfc_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A real Mosquitto on a free loopback port for this test."""
    with running_mosquitto(tmp_path / "mosquitto") as broker:
        yield broker
