"""Fuzzing the OSCORE layer: mutations of a captured protected request (tests/oscore_fuzz.py:
OSCORE option, ciphertext, tag, kid, partial IV, outer options, replays, wrong keys, another
board's pack under an enrolled key) never crash or stall the gateway nor store anything.
``nox -s bench`` sends 100,000 of them to a gateway process (gateway_oscore_fuzz)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import cbor2
import pytest
from aiocoap import POST, Message

from gateway.daemon import Gateway
from gateway.oscore.keys import KeyMaterial
from tests.gateway.conftest import db_rows, gateway_config, senml_pack
from tests.gateway.oscore_support import UdpTap, board_key, oscore_client, write_keys_file
from tests.oscore_fuzz import Forger, ProtectedMutations
from tests.oscore_requests import BoardSender

B1 = board_key("b1", b"\x01")
#: Enrolled too: it protects packs that name b1 (refused: the board is not the key's).
B2 = board_key("b2", b"\x02")
MUTATIONS = 5_000


async def test_mutated_protected_requests_store_nothing_and_the_gateway_serves_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = write_keys_file(tmp_path / "keys.json", [B1, B2])
    fast = {"limits.peer_rate": 1e6, "limits.peer_burst": 1e6, "limits.host_rate": 1e6}
    fast |= {"limits.host_burst": 1e6, "limits.total_rate": 1e6, "limits.total_burst": 1e6}
    gw = Gateway(
        gateway_config(
            tmp_path / "state",
            **{"security.plain_coap": False, "security.keys_file": keys, **fast},
        )
    )
    await gw.start()
    try:
        host, port = gw.bound_address

        def request(start_s: int, to_port: int) -> Message:
            return Message(
                code=POST,
                uri=f"coap://127.0.0.1:{to_port}/readings",
                payload=cbor2.dumps(senml_pack("b1", start_s=start_s)),
                content_format=112,
            )

        async with (
            UdpTap(gw.bound_address) as tap,
            oscore_client(tmp_path / "b1", B1, "127.0.0.1", tap.port) as client,
        ):
            response = await client.request(request(1_700_000_000, tap.port)).response
            assert str(response.code) == "2.04 Changed"
        mutants = ProtectedMutations(
            tap.captured[:1],
            seed=13,
            enrolled_kids=[B2.material.sid],
            wrong_key=BoardSender(KeyMaterial(sid=B1.material.sid, secret=b"w" * 32)),
            forger=Forger(
                BoardSender(B2.material), cbor2.dumps(senml_pack("b1", start_s=1_700_000_100))
            ),
        )
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            for i in range(MUTATIONS):
                await loop.sock_sendto(sock, next(mutants), (host, port))
                if i % 10 == 9:
                    await asyncio.sleep(0.004)  # paced, so the socket's buffer drops none
        finally:
            sock.close()
        async with oscore_client(tmp_path / "b1", B1, host, port) as client:
            response = await asyncio.wait_for(
                client.request(request(1_700_000_001, port)).response, 20
            )
        assert str(response.code) == "2.04 Changed"
        assert db_rows(gw.config.state_dir, "SELECT count(*) FROM readings")[0][0] == 2
        refused = gw.stats()["security"]["refused"]
        seen = sum(refused.values()) + sum(gw.stats()["screened"].values())
        # Some mutations are no request at all (type bits made an ACK or RST).
        assert seen >= 0.6 * MUTATIONS
        assert not [r for r in caplog.records if r.exc_info], "a traceback: a crash in a handler"
    finally:
        await gw.stop()
