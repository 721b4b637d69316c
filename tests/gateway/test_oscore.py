"""OSCORE between boards and the gateway, in process: aiocoap's OSCORE client against the
gateway's aiocoap OSCORE server side, over UDP on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import cbor2
import pytest
from aiocoap import GET, POST, Context, Message

from gateway.daemon import Gateway
from gateway.oscore.contexts import RESTORE_JUMP
from tests.gateway.conftest import db_rows, gateway_config, senml_pack
from tests.gateway.oscore_support import (
    UdpTap,
    answer_code,
    board_key,
    oscore_client,
    send_raw,
    write_keys_file,
)

B1 = board_key("b1", b"\x01")
B2 = board_key("b2", b"\x02")
UNKNOWN = board_key("b9", b"\x09")
WRONG = board_key("b1", b"\x01", secret=b"w" * 32)


def readings_stored(state_dir: Path) -> int:
    return int(db_rows(state_dir, "SELECT count(*) FROM readings")[0][0])


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Gateway]:
    keys = write_keys_file(tmp_path / "keys.json", [B1, B2])
    gw = Gateway(
        gateway_config(
            tmp_path / "state", **{"security.plain_coap": False, "security.keys_file": keys}
        )
    )
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


def pack_request(gw: Gateway, board: str = "b1", start_s: int = 1_700_000_000) -> Message:
    host, port = gw.bound_address
    return Message(
        code=POST,
        uri=f"coap://{host}:{port}/readings",
        payload=cbor2.dumps(senml_pack(board, start_s=start_s)),
        content_format=112,
    )


async def test_enrolled_board_stores_readings_and_reads_health(
    secured: Gateway, tmp_path: Path
) -> None:
    host, port = secured.bound_address
    async with oscore_client(tmp_path / "b1", B1, host, port) as client:
        for i in range(3):
            response = await client.request(
                pack_request(secured, start_s=1_700_000_000 + i)
            ).response
            assert str(response.code) == "2.04 Changed"
        health = await client.request(
            Message(code=GET, uri=f"coap://{host}:{port}/gateway")
        ).response
    assert str(health.code) == "2.05 Content"
    security = json.loads(health.payload)["security"]
    assert security["plain_coap"] is False
    assert security["boards_enrolled"] == 2
    assert readings_stored(secured.config.state_dir) == 3


@pytest.mark.parametrize("key", [None, UNKNOWN, WRONG], ids=["plain", "unknown_kid", "wrong_key"])
async def test_unprotected_unknown_or_wrong_key_gets_401(
    secured: Gateway, tmp_path: Path, key: object
) -> None:
    host, port = secured.bound_address
    if key is None:
        client = await Context.create_client_context()
        try:
            response = await client.request(pack_request(secured)).response
        finally:
            await client.shutdown()
        reason = "not_protected"
    else:
        async with oscore_client(tmp_path / "c", key, host, port) as client:  # type: ignore[arg-type]
            code = await answer_code(client, pack_request(secured))
        reason = "unknown_kid" if key is UNKNOWN else "bad_mac"
    if key is None:
        code = str(response.code)
    assert code == "4.01 Unauthorized"
    assert readings_stored(secured.config.state_dir) == 0
    assert secured.stats()["security"]["refused"][reason] >= 1


async def test_board_id_other_than_the_keys_owner_is_refused(
    secured: Gateway, tmp_path: Path
) -> None:
    host, port = secured.bound_address
    async with oscore_client(tmp_path / "b1", B1, host, port) as client:
        response = await client.request(pack_request(secured, board="b2")).response
    assert str(response.code) == "4.03 Forbidden"
    assert readings_stored(secured.config.state_dir) == 0
    assert secured.stats()["security"]["refused"]["board_mismatch"] == 1


async def test_replayed_datagram_gets_401_and_is_stored_once(
    secured: Gateway, tmp_path: Path
) -> None:
    async with (
        UdpTap(secured.bound_address) as tap,
        oscore_client(tmp_path / "b1", B1, "127.0.0.1", tap.port) as client,
    ):
        request = pack_request(secured)
        request.set_request_uri(f"coap://127.0.0.1:{tap.port}/readings")
        response = await client.request(request).response
    assert str(response.code) == "2.04 Changed"
    answer = await send_raw(tap.captured[0], secured.bound_address)
    assert answer[1] == 0x81  # 4.01
    assert readings_stored(secured.config.state_dir) == 1
    assert secured.stats()["security"]["refused"]["replayed"] == 1


async def test_restored_copy_of_the_state_dir_reinitialises_its_contexts(
    tmp_path: Path,
) -> None:
    """A backup taken at a clean stop, used again after the original went on: the copy's
    sender sequence numbers jump ahead and a packet the original accepted after the backup
    is not accepted by the copy (its replay window is not trusted: Echo first)."""
    keys = write_keys_file(tmp_path / "keys.json", [B1])
    state, backup = tmp_path / "state", tmp_path / "backup"
    settings = {"security.plain_coap": False, "security.keys_file": keys}
    gw = Gateway(gateway_config(state, **settings))
    await gw.start()
    async with oscore_client(tmp_path / "b1", B1, *gw.bound_address) as client:
        response = await client.request(pack_request(gw)).response
        assert str(response.code) == "2.04 Changed"
        await gw.stop()
        shutil.copytree(state, backup)  # the backup (new files: new inodes and ctimes)
        sequence = next((state / "oscore").glob("*/*/sequence.json"))
        sent_before = json.loads(sequence.read_text())["next-to-send"]
        gw = Gateway(gateway_config(state, **settings))
        await gw.start()
        assert gw.stats()["security"]["restored"] is False
        async with UdpTap(gw.bound_address) as tap:
            secctx = next(iter(client.client_credentials.values()))
            client.client_credentials[f"coap://127.0.0.1:{tap.port}/*"] = secctx
            request = pack_request(gw, start_s=1_700_000_100)
            request.set_request_uri(f"coap://127.0.0.1:{tap.port}/readings")
            response = await client.request(request).response
            assert str(response.code) == "2.04 Changed"
        await gw.stop()
    shutil.rmtree(state)
    backup.rename(state)  # the backup restored in place
    gw = Gateway(gateway_config(state, **settings))
    await gw.start()
    try:
        assert gw.stats()["security"]["restored"] is True
        sent_after = json.loads(sequence.read_text())["next-to-send"]
        assert sent_after >= sent_before + RESTORE_JUMP
        await send_raw(tap.captured[-1], gw.bound_address)
        # Answered with a protected 4.01 and an Echo (outer code 2.04), not accepted:
        assert gw.stats()["security"]["refused"]["echo_challenge"] == 1
        assert readings_stored(state) == 1
    finally:
        await gw.stop()


async def test_well_known_core_is_open_and_lists_nothing_protected(secured: Gateway) -> None:
    host, port = secured.bound_address
    client = await Context.create_client_context()
    try:
        response = await client.request(
            Message(code=GET, uri=f"coap://{host}:{port}/.well-known/core")
        ).response
    finally:
        await client.shutdown()
    assert str(response.code) == "2.05 Content"
    for path in (b"/readings", b"/health", b"/gateway", b"/ota"):
        assert path not in response.payload


async def test_lab_flag_shows_in_health(tmp_path: Path) -> None:
    gw = Gateway(gateway_config(tmp_path / "state", **{"security.plain_coap": True}))
    await gw.start()
    try:
        assert gw.stats()["security"]["plain_coap"] is True
    finally:
        await gw.stop()


async def test_refusals_reach_the_control_process_through_the_security_file(
    secured: Gateway, tmp_path: Path
) -> None:
    from gateway.oscore import stats_file
    from tests.support import eventually

    state_dir = secured.config.state_dir
    plain = await Context.create_client_context()
    try:
        response = await plain.request(pack_request(secured)).response
    finally:
        await plain.shutdown()
    assert str(response.code) == "4.01 Unauthorized"
    host, port = secured.bound_address
    async with oscore_client(tmp_path / "b9", UNKNOWN, host, port) as client:
        assert await answer_code(client, pack_request(secured, "b9")) == "4.01 Unauthorized"

    def reported() -> dict[str, int]:
        body = stats_file.read(state_dir) or {}
        refused: dict[str, int] = body.get("refused", {})
        return refused

    assert await eventually(
        lambda: reported().get("not_protected") == 1 and reported().get("unknown_kid") == 1, 10
    ), stats_file.read(state_dir)
    body = stats_file.read(state_dir)
    assert body is not None
    assert body["plain_coap"] is False
    assert readings_stored(state_dir) == 0
