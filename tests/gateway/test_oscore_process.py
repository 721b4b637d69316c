"""OSCORE with the gateway as a real process: SIGKILLed mid-stream, restarted, and the board's
aiocoap OSCORE client goes on through Echo (RFC 8613 Appendix B.1.2) losing nothing acked."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import cbor2
from aiocoap import GET, POST, Message
from aiocoap.error import NetworkError

from tests.gateway.conftest import senml_pack
from tests.gateway.oscore_support import board_key, oscore_client, write_keys_file
from tests.support import GatewayProcess

B1 = board_key("b1", b"\x01")
START_S = 1_700_000_000


async def test_gateway_killed_mid_stream_recovers_through_echo(tmp_path: Path) -> None:
    keys = write_keys_file(tmp_path / "keys.json", [B1])
    env = {
        "SIMPUL_GATEWAY__SECURITY__PLAIN_COAP": "false",
        "SIMPUL_GATEWAY__SECURITY__KEYS_FILE": str(keys),
    }
    gw = GatewayProcess(tmp_path / "state", gateway_id="gw-osc", site=None, env=env)
    gw.start()
    host, port = gw.address
    acked: set[int] = set()
    five_acked = asyncio.Event()

    async def send(i: int) -> None:
        request = Message(
            code=POST,
            uri=f"coap://{host}:{port}/readings",
            payload=cbor2.dumps(senml_pack("b1", start_s=START_S + i)),
            content_format=112,
        )
        for _ in range(50):  # as a board does: keep the reading until it is acknowledged
            try:
                response = await client.request(request).response
                break
            except NetworkError:  # the gateway is down (ICMP port unreachable)
                await asyncio.sleep(0.2)
        if str(response.code) == "2.04 Changed":
            acked.add((START_S + i) * 1000)
            if len(acked) >= 5:
                five_acked.set()

    async def stream_of(count: int) -> None:
        for i in range(count):
            await send(i)

    try:
        async with oscore_client(tmp_path / "b1", B1, host, port) as client:
            stream = asyncio.create_task(stream_of(20))
            await asyncio.wait_for(five_acked.wait(), 10)
            gw.kill(every_process=True)  # a request in flight, the rest to come
            killed_with = len(acked)
            await asyncio.sleep(0.3)
            gw.start()
            await stream
            health = await client.request(
                Message(code=GET, uri=f"coap://{host}:{port}/gateway")
            ).response
    finally:
        gw.close()
    stored = {t for b, _, t in gw.stored() if b == "b1"}
    assert killed_with < 20
    assert len(acked) == 20
    assert acked <= stored  # nothing acknowledged is lost
    security = json.loads(health.payload)["security"]
    assert security["refused"]["echo_challenge"] >= 1
    assert security["restored"] is False
