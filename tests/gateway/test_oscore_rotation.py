"""Key rotation, the gateway's side: a board re-keyed in the keys file is handed its new key
in the 2.04s to requests its old key protected, until its first request under the new key;
then the old key is refused. aiocoap's OSCORE client stands in for the board here (the
firmware's side: tests/integration/test_oscore_rotation.py)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import cbor2
import pytest
from aiocoap import Context, Message

from gateway.daemon import Gateway
from gateway.oscore.keys import BoardKey, KeyMaterial, encode_keys_file
from tests.gateway.conftest import db_rows, gateway_config, senml_pack
from tests.gateway.oscore_support import (
    UdpTap,
    answer_code,
    board_key,
    oscore_client,
    send_raw,
)
from tests.support import eventually

B1 = board_key("b1", b"\x01")
B2 = board_key("b2", b"\x02")
B1_NEW = board_key("b1", b"\x01", secret=b"n" * 32)
SECRET_SEEN = (B1_NEW.material.secret, B1_NEW.material.secret.hex().encode())


def replace_keys_file(path: Path, keys: list[BoardKey]) -> None:
    """Write a keys file as an operator's tool should: whole, then renamed into place."""
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(encode_keys_file(keys))
    os.replace(temporary, path)


def readings_stored(state_dir: Path) -> int:
    return int(db_rows(state_dir, "SELECT count(*) FROM readings")[0][0])


def handed_over(response: Message) -> KeyMaterial | None:
    """The key material a 2.04 hands over (``{"key": <board file>}``), if any."""
    if not response.payload:
        return None
    key = cbor2.loads(response.payload).get("key")
    return None if key is None else KeyMaterial.from_json(json.loads(key))


def readings(port: int, start_s: int, board: str = "b1") -> Message:
    return Message(
        code=2,  # POST
        uri=f"coap://127.0.0.1:{port}/readings",
        payload=cbor2.dumps(senml_pack(board, start_s=start_s)),
        content_format=112,
    )


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    keys = tmp_path / "keys.json"
    replace_keys_file(keys, [B1, B2])
    settings = {
        "security.plain_coap": False,
        "security.keys_file": keys,
        "security.reload_interval_ms": 50,
    }
    gw = Gateway(gateway_config(tmp_path / "state", **settings))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


async def test_the_old_key_is_answered_with_the_new_one_until_the_board_uses_it(
    gateway: Gateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keys_file = gateway.config.security.keys_file
    assert keys_file is not None
    async with (
        UdpTap(gateway.bound_address) as tap,
        oscore_client(tmp_path / "old", B1, "127.0.0.1", tap.port) as old,
    ):
        response = await old.request(readings(tap.port, 1_700_000_000)).response
        assert str(response.code) == "2.04 Changed"
        assert handed_over(response) is None  # nothing to hand over yet

        replace_keys_file(keys_file, [B1_NEW, B2])  # the keys file's reload re-keys b1
        assert await eventually(lambda: gateway.stats()["security"]["rotating"] == 1, 5)
        for start_s in (1_700_000_001, 1_700_000_002):
            # The second as after a lost answer: the board asks again under its old key.
            response = await old.request(readings(tap.port, start_s)).response
            assert str(response.code) == "2.04 Changed"
            assert handed_over(response) == B1_NEW.material
        # Inside the protected answers only: no datagram carried the new secret in clear.
        assert len(tap.answers) >= 3
        assert not [a for a in tap.answers if any(s in a for s in SECRET_SEEN)]

        async with oscore_client(tmp_path / "new", B1_NEW, "127.0.0.1", tap.port) as new:
            response = await new.request(readings(tap.port, 1_700_000_003)).response
        assert str(response.code) == "2.04 Changed"
        assert handed_over(response) is None
        assert gateway.stats()["security"]["rotating"] == 0

        # The old key is retired: a new request under it, and a captured one replayed.
        assert await answer_code(old, readings(tap.port, 1_700_000_004)) == "4.01 Unauthorized"
    posts = [datagram for datagram in tap.captured if datagram[1] == 0x02]  # POST (outer)
    answer = await send_raw(posts[1], gateway.bound_address)
    assert answer[1] == 0x81  # 4.01
    assert readings_stored(gateway.config.state_dir) == 4
    assert gateway.stats()["security"]["refused"]["bad_mac"] == 2
    assert not [s for s in SECRET_SEEN if s.decode("latin-1") in caplog.text]


async def test_other_boards_and_new_key_requests_are_handed_nothing(
    gateway: Gateway, tmp_path: Path
) -> None:
    keys_file = gateway.config.security.keys_file
    assert keys_file is not None
    replace_keys_file(keys_file, [B1_NEW, B2])
    assert await eventually(lambda: gateway.stats()["security"]["rotating"] == 1, 5)
    host, port = gateway.bound_address
    async with oscore_client(tmp_path / "b2", B2, host, port) as b2:
        response = await b2.request(readings(port, 1_700_000_000, board="b2")).response
    assert str(response.code) == "2.04 Changed"
    assert handed_over(response) is None
    assert gateway.stats()["security"]["rotating"] == 1  # b1 has not spoken yet


async def test_a_plain_request_is_never_handed_a_key(tmp_path: Path) -> None:
    """With the lab flag, plain CoAP under a re-keyed board's name gets no key."""
    keys = tmp_path / "keys.json"
    replace_keys_file(keys, [B1])
    settings = {
        "security.plain_coap": True,
        "security.keys_file": keys,
        "security.reload_interval_ms": 50,
    }
    gw = Gateway(gateway_config(tmp_path / "state", **settings))
    await gw.start()
    try:
        replace_keys_file(keys, [B1_NEW])
        assert await eventually(lambda: gw.stats()["security"]["rotating"] == 1, 5)
        client = await Context.create_client_context()
        try:
            response = await client.request(readings(gw.bound_address[1], 1_700_000_000)).response
        finally:
            await client.shutdown()
    finally:
        await gw.stop()
    assert str(response.code) == "2.04 Changed"
    assert not any(s in response.payload for s in SECRET_SEEN)
    assert handed_over(response) is None
