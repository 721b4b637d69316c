"""Interop with libcoap's client, an independent CoAP implementation (Debian libcoap3-bin)."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from gateway.daemon import Gateway

pytestmark = pytest.mark.interop

COAP_CLIENT = "coap-client-notls"


async def coap_client(*args: str) -> tuple[int, str, str]:
    """Run libcoap's client; fails (never skips) when it is not installed."""
    if shutil.which(COAP_CLIENT) is None:
        pytest.fail(f"{COAP_CLIENT} not found: install libcoap3-bin (apt) to run interop tests")
    proc = await asyncio.create_subprocess_exec(
        COAP_CLIENT,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_libcoap_lists_the_resources(gateway: Gateway) -> None:
    _, port = gateway.bound_address
    code, out, err = await coap_client("-m", "get", f"coap://127.0.0.1:{port}/.well-known/core")
    assert code == 0, err
    links = out.strip().split(",")
    assert '</readings>;ct="112 110";rt="simpul.readings"' in links
    assert '</health>;ct="60 50";rt="simpul.health"' in links


async def test_libcoap_post_of_senml_json_gets_2_04_and_reaches_the_uplink(
    gateway: Gateway,
) -> None:
    _, port = gateway.bound_address
    pack = [{"bn": "urn:dev:simpul:lc-1:", "bt": 1_700_000_000, "n": "temp", "u": "Cel", "v": 27.5}]
    # -v 6 makes libcoap print the PDUs it exchanges, so the response code can be checked.
    code, out, err = await coap_client(
        "-v", "6", "-m", "post", "-t", "110", "-e", json.dumps(pack),
        f"coap://127.0.0.1:{port}/readings",
    )  # fmt: skip
    assert code == 0, err
    assert "c:2.04" in out
    uplink = gateway.config.state_dir / "uplink"
    for _ in range(250):
        lines = [line for path in uplink.glob("*.jsonl") for line in path.read_text().splitlines()]
        if lines:
            break
        await asyncio.sleep(0.02)
    assert [json.loads(line)["board"] for line in lines] == ["lc-1"]
    assert json.loads(lines[0])["value"] == 27.5


async def test_libcoap_sees_the_diagnostic_of_a_bad_payload(gateway: Gateway) -> None:
    _, port = gateway.bound_address
    _, _, err = await coap_client(
        "-m", "post", "-t", "110", "-e", "[{", f"coap://127.0.0.1:{port}/readings"
    )
    assert err.startswith("4.00 not valid JSON")
