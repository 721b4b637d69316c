"""Board keys sealed to the gateway in the desired document (gateway.oscore.seal): opened
when the document is applied, refused whole when one seal does not open here."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cbor2
import pytest
from aiocoap import POST, Message

from gateway.config import GatewayConfig
from gateway.control.apply import Controller
from gateway.control.messages import BoardEntry, Desired
from gateway.daemon import Gateway
from gateway.oscore import seal
from gateway.oscore.keys import BoardKey, KeyMaterial
from gateway.ota.cache import ReleaseCache
from gateway.store.board_keys import BoardKeyTable
from gateway.store.control import ControlStore
from gateway.store.registry import StoreReader
from gateway.store.releases import ReleaseTable
from gateway.store.schema import prepare
from tests.control.keys import Operator
from tests.gateway.conftest import gateway_config, senml_pack
from tests.gateway.oscore_support import answer_code, board_key, oscore_client
from tests.support import eventually

SITE, GATEWAY = "takengon", "gw-takengon-1"
B1 = board_key("b1", b"\x01")


@dataclass
class Setup:
    config: GatewayConfig
    controller: Controller
    operator: Operator

    def document(self, seq: int, boards: dict[str, BoardEntry]) -> bytes:
        desired = Desired(SITE, GATEWAY, seq, int(time.time()), boards)
        return self.operator.seal(desired)

    def sealed(self, key: BoardKey, *, gateway: str = GATEWAY) -> bytes:
        public = seal.public_bytes(self.controller.seal_key)
        plain = json.dumps(key.material.to_json()).encode()
        return seal.seal(plain, public, site=SITE, gateway=gateway, board_id=key.board_id)

    def enrolled(self) -> dict[str, bytes]:
        table = BoardKeyTable(self.config.db_path, read_only=True)
        try:
            return {k.board_id: k.material.secret for k in table.all()}
        finally:
            table.close()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    operator = Operator()
    config = gateway_config(
        tmp_path / "state",
        gateway_id=GATEWAY,
        site=SITE,
        **{"security.plain_coap": False, "security.reload_interval_ms": 50},
    )
    config.state_dir.mkdir(parents=True)
    prepare(config.db_path)
    store, releases = ControlStore(config.db_path), ReleaseTable(config.db_path)
    cache, reader = ReleaseCache(config, operator.root_public), StoreReader(config.db_path)
    controller = Controller(
        config, operator.root_public, store=store, releases=releases, cache=cache, reader=reader
    )
    try:
        yield Setup(config, controller, operator)
    finally:
        controller.board_keys.close()
        for closable in (reader, cache, releases, store):
            closable.close()


async def test_a_sealed_key_in_the_desired_document_enables_the_board(setup: Setup) -> None:
    gw = Gateway(setup.config)
    await gw.start()
    try:
        entry = BoardEntry("aq", 0, setup.sealed(B1))
        assert setup.controller.on_desired(setup.document(1, {"b1": entry})).applied
        host, port = gw.bound_address
        request = Message(
            code=POST,
            uri=f"coap://{host}:{port}/readings",
            payload=cbor2.dumps(senml_pack("b1")),
            content_format=112,
        )
        assert await eventually(lambda: gw.stats()["security"]["boards_enrolled"] == 1, 5)
        async with oscore_client(setup.config.state_dir.parent / "b1", B1, host, port) as client:
            response = await client.request(request).response
        assert str(response.code) == "2.04 Changed"
    finally:
        await gw.stop()


@pytest.mark.parametrize("forgery", ["tampered", "other_gateway", "other_board"])
def test_a_seal_that_does_not_open_here_is_refused_and_changes_nothing(
    setup: Setup, forgery: str
) -> None:
    assert setup.controller.on_desired(
        setup.document(1, {"b1": BoardEntry("aq", 0, setup.sealed(B1))})
    ).applied
    rotated = board_key("b1", b"\x01", secret=b"n" * 32)
    sealed = setup.sealed(rotated, gateway="gw-other" if forgery == "other_gateway" else GATEWAY)
    if forgery == "tampered":
        sealed = sealed[:-1] + bytes([sealed[-1] ^ 1])
    boards = {"b1": BoardEntry("aq", 0, sealed)}
    if forgery == "other_board":  # b2's seal moved into b1's entry
        boards = {"b1": BoardEntry("aq", 0, setup.sealed(board_key("b2", b"\x01")))}
    outcome = setup.controller.on_desired(setup.document(2, boards))
    assert not outcome.applied
    assert setup.enrolled() == {"b1": B1.material.secret}
    assert setup.controller.control_state()["refused"].get("sealed_key") == 1
    assert setup.controller.doc_seq == 1


async def test_a_sealed_new_key_reaches_the_board_under_its_old_one(
    setup: Setup, tmp_path: Path
) -> None:
    """A board re-keyed by a desired document: its next request under the old key is
    answered with the new key (sealed to the gateway on the way, protected to the board
    under the old key), and once it speaks under the new key the old one is refused."""
    rotated = board_key("b1", b"\x01", secret=b"n" * 32)
    gw = Gateway(setup.config)
    await gw.start()
    try:
        host, port = gw.bound_address

        def readings(start_s: int) -> Message:
            return Message(
                code=POST,
                uri=f"coap://{host}:{port}/readings",
                payload=cbor2.dumps(senml_pack("b1", start_s=start_s)),
                content_format=112,
            )

        assert setup.controller.on_desired(
            setup.document(1, {"b1": BoardEntry("aq", 0, setup.sealed(B1))})
        ).applied
        assert await eventually(lambda: gw.stats()["security"]["boards_enrolled"] == 1, 5)
        async with oscore_client(tmp_path / "old", B1, host, port) as old:
            response = await old.request(readings(1_700_000_000)).response
            assert (str(response.code), response.payload) == ("2.04 Changed", b"")
            entry = BoardEntry("aq", 0, setup.sealed(rotated))
            assert setup.controller.on_desired(setup.document(2, {"b1": entry})).applied
            assert await eventually(lambda: gw.stats()["security"]["rotating"] == 1, 5)
            response = await old.request(readings(1_700_000_001)).response
            assert str(response.code) == "2.04 Changed"
            handed = json.loads(cbor2.loads(response.payload)["key"])
            assert KeyMaterial.from_json(handed) == rotated.material
            async with oscore_client(tmp_path / "new", rotated, host, port) as new:
                response = await new.request(readings(1_700_000_002)).response
            assert (str(response.code), response.payload) == ("2.04 Changed", b"")
            assert await answer_code(old, readings(1_700_000_003)) == "4.01 Unauthorized"
        assert gw.stats()["security"]["rotating"] == 0
        assert setup.enrolled() == {"b1": rotated.material.secret}
    finally:
        await gw.stop()
