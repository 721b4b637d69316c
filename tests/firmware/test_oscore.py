"""The firmware's OSCORE client against aiocoap's OSCORE server, over UDP on 127.0.0.1, and its
sender sequence store through power cuts (CPython; the RFC 8613 vectors run on both
interpreters from mpy/mpy_test_oscore.py)."""

from __future__ import annotations

import contextlib
import json
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiocoap
import coap
import coapclient
import oscore
import oscorekeys
import pytest
from aiocoap import resource
from aiocoap.credentials import CredentialsMap
from aiocoap.oscore import FilesystemSecurityContext
from aiocoap.oscore_sitewrapper import OscoreSiteWrapper
from aiocoap.transports.oscore import OSCOREAddress
from errors import CoapRefused, OscoreError

from hw.engines.base import provision_oscore
from hw.engines.micropython import Ticks
from hw.flash import Flash, FlashFaults, PowerCut
from hw.link import LinkFaults, UdpLink
from tests.support import free_udp_port

SID = bytes.fromhex("0b01")  # the board's Sender ID
SECRET = bytes.fromhex("8a1c5b0e6f2d4c3b9a8e7f6d5c4b3a29")
SALT = bytes.fromhex("5a17")


class HostBoard:
    """What ``coapclient.Client`` asks of a board: clocks and randomness."""

    def __init__(self) -> None:
        self._ticks = Ticks()

    def ticks_ms(self) -> int:
        return self._ticks.ticks_ms()

    def ticks_diff(self, a: int, b: int) -> int:
        return self._ticks.ticks_diff(a, b)

    def urandom(self, n: int) -> bytes:
        return os.urandom(n)


class Readings(resource.Resource):  # type: ignore[misc]
    """/readings: records what it was given (after OSCORE), answers 2.04 "stored <n>"."""

    def __init__(self, answer: aiocoap.Message | None = None) -> None:
        super().__init__()
        self.seen: list[aiocoap.Message] = []
        self._answer = answer

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        self.seen.append(request)
        if self._answer is not None:
            return self._answer
        return aiocoap.Message(code=aiocoap.CHANGED, payload=b"stored %d" % len(request.payload))


@contextlib.asynccontextmanager
async def oscore_server(
    tmp: Path, readings: Readings, *, knows: bytes = SID, lost_window: bool = False
) -> AsyncIterator[int]:
    """aiocoap serving ``readings`` behind its OSCORE site wrapper, with one context: the
    gateway's (Sender ID empty) for the board ``knows``. ``lost_window``: as after a crash,
    its replay window unknown, so it recovers with Echo (RFC 8613 Appendix B.1.2)."""
    ctx_dir = tmp / "gateway-ctx"
    ctx_dir.mkdir()
    settings = {
        "sender-id_hex": "",
        "recipient-id_hex": knows.hex(),
        "secret_hex": SECRET.hex(),
        "salt_hex": SALT.hex(),
    }
    (ctx_dir / "settings.json").write_text(json.dumps(settings))
    if lost_window:
        (ctx_dir / "sequence.json").write_text('{"next-to-send": 0, "received": "unknown"}')
    credentials = CredentialsMap()
    credentials[":board"] = FilesystemSecurityContext(str(ctx_dir))
    site = resource.Site()
    site.add_resource(["readings"], readings)
    port = free_udp_port()
    context = await aiocoap.Context.create_server_context(
        OscoreSiteWrapper(site, credentials),
        bind=("127.0.0.1", port),
        server_credentials=credentials,
    )
    try:
        yield port
    finally:
        await context.shutdown()


def provisioned(tmp: Path) -> Flash:
    flash = Flash(tmp / "flash")
    flash.mkdir("/data")
    provision_oscore(flash, sid=SID, secret=SECRET, salt=SALT)
    return flash


async def post_reading(port: int, flash: Flash, payload: bytes = b"\x81\xa1\x00\x01") -> Any:
    """One reading POSTed as the app does, by a client over the board's key material."""
    link = UdpLink("127.0.0.1", port, LinkFaults())
    client = coapclient.Client(HostBoard(), link, 500, 2, oscorekeys.load(flash))
    try:
        return await client.request(
            coap.POST, "/readings", payload, coap.SENML_CBOR, ["s=1", "n=1"]
        )
    finally:
        link.close()


async def test_aiocoap_accepts_the_boards_request_and_the_board_verifies_its_answer(
    tmp_path: Path,
) -> None:
    readings = Readings()
    flash = provisioned(tmp_path)
    async with oscore_server(tmp_path, readings) as port:
        response = await post_reading(port, flash)
        again = await post_reading(port, flash)  # the next boot's client: a new sequence
    assert response.code == coap.CHANGED
    assert response.payload == b"stored 4"
    assert again.code == coap.CHANGED
    request, _ = readings.seen
    assert isinstance(request.remote, OSCOREAddress)  # it came in through the context
    assert request.code == aiocoap.POST
    assert request.opt.uri_query == ("s=1", "n=1")
    assert request.opt.content_format == coap.SENML_CBOR
    assert request.payload == b"\x81\xa1\x00\x01"
    # The first boot reserved 0..31 before it sent 0; the second starts at 32.
    assert (flash.host_path("/data/oscore_seq")).read_text() == "64"


async def test_gateway_that_lost_its_replay_window_gets_the_request_again_with_its_echo(
    tmp_path: Path,
) -> None:
    readings = Readings()
    flash = provisioned(tmp_path)
    async with oscore_server(tmp_path, readings, lost_window=True) as port:
        response = await post_reading(port, flash)
    assert response.code == coap.CHANGED
    (request,) = readings.seen  # the first try was refused before the resource saw it
    assert request.opt.echo is not None  # the second carried the Echo, inside
    assert isinstance(request.remote, OSCOREAddress)
    assert oscorekeys.stored_sequence(flash) == oscore.SEQ_STEP  # two numbers taken, 0 and 1


async def test_an_echo_is_answered_once_not_forever(tmp_path: Path) -> None:
    readings = Readings(aiocoap.Message(code=aiocoap.UNAUTHORIZED, echo=b"\x01\x02\x03\x04"))
    flash = provisioned(tmp_path)
    async with oscore_server(tmp_path, readings) as port:
        response = await post_reading(port, flash)
    assert response.code == coap.UNAUTHORIZED
    first, second = readings.seen
    assert first.opt.echo is None
    assert second.opt.echo == b"\x01\x02\x03\x04"


async def test_refusal_in_clear_from_a_gateway_that_does_not_know_the_board(
    tmp_path: Path,
) -> None:
    readings = Readings()
    flash = provisioned(tmp_path)
    async with oscore_server(tmp_path, readings, knows=b"\x0b\x02") as port:
        with pytest.raises(CoapRefused) as refused:
            await post_reading(port, flash)
    assert refused.value.code == coap.UNAUTHORIZED
    assert readings.seen == []


def test_key_material_never_in_the_contexts_repr(tmp_path: Path) -> None:
    ctx = oscorekeys.load(provisioned(tmp_path))
    assert repr(ctx) == "<OSCORE sid=0b01 rid=>"
    assert SECRET.hex() not in repr(vars(ctx))


def test_unusable_key_material_is_refused_not_downgraded(tmp_path: Path) -> None:
    flash = provisioned(tmp_path)
    assert oscorekeys.load(Flash(tmp_path / "empty")) is None  # no key material: plain CoAP
    flash.host_path("/oscore.json").write_text('{"sid": "0b01", "rid": ""}')
    with pytest.raises(OscoreError):
        oscorekeys.load(flash)
    provision_oscore(flash, sid=SID, secret=SECRET)
    flash.host_path("/data/oscore_seq").write_text("3x")
    with pytest.raises(OscoreError):
        oscorekeys.load(flash)


def test_no_nonce_reused_over_1000_boots_with_power_cuts_at_every_flash_write(
    tmp_path: Path,
) -> None:
    """A board boots 1,000 times; in most boots the power goes at one of its flash writes
    (the first, second or third reservation of sequence numbers: each is cut dozens
    times, mid-write), otherwise after up to 99 requests. Every nonce it used is
    recorded: none twice, and a boot wastes at most one step of numbers."""
    flash_dir = tmp_path / "flash"
    provisioned(tmp_path)
    _, _, common_iv = oscorekeys.derive(SECRET, SALT, SID, b"")
    faults = FlashFaults()
    rng = random.Random(8613)
    nonces: set[bytes] = set()
    used = 0
    cut_at: dict[int, int] = {}  # which write of a boot was cut: how often
    for boot in range(1000):
        faults.cut_at_write = None if boot % 4 == 0 else 1 + boot % 3
        flash = Flash(flash_dir, faults)
        try:
            ctx = oscorekeys.load(flash)
            assert ctx is not None
            for _ in range(rng.randrange(1, 100)):
                _, _, _, piv = ctx.protect(coap.POST, [(coap.URI_PATH, b"readings")], b"x")
                nonce = oscore.nonce(common_iv, SID, piv)
                assert nonce not in nonces, f"nonce reused at boot {boot}"
                nonces.add(nonce)
                used += 1
        except PowerCut:
            cut_at[flash.writes] = cut_at.get(flash.writes, 0) + 1
    assert set(cut_at) == {1, 2, 3}, cut_at
    assert min(cut_at.values()) > 50, cut_at
    assert used == len(nonces) > 10_000
    left = oscorekeys.stored_sequence(Flash(flash_dir))
    assert left <= used + 1000 * oscore.SEQ_STEP


def test_a_power_cut_in_the_key_write_leaves_the_old_key_whole(tmp_path: Path) -> None:
    """The key the gateway hands over is torn mid-write: the board boots with its old key,
    and the next hand-over writes the new one whole."""
    faults = FlashFaults(cut_at_path="/oscore.json.new")
    flash = provisioned(tmp_path)
    old = flash.host_path("/oscore.json").read_text()
    new_secret = bytes(range(32))
    text = json.dumps({"sid": SID.hex(), "rid": "", "secret": new_secret.hex(), "salt": ""})
    with pytest.raises(PowerCut):
        oscorekeys.install(Flash(tmp_path / "flash", faults), text)
    assert flash.host_path("/oscore.json").read_text() == old
    assert flash.host_path("/oscore.json.new").read_text() == text[: len(text) // 2]
    ctx = oscorekeys.load(Flash(tmp_path / "flash", faults))
    assert ctx is not None
    assert ctx._keys == oscorekeys.derive(SECRET, SALT, SID, b"")
    ctx = oscorekeys.install(Flash(tmp_path / "flash", faults), text)
    assert ctx._keys == oscorekeys.derive(new_secret, b"", SID, b"")
    assert json.loads(flash.host_path("/oscore.json").read_text())["secret"] == new_secret.hex()
    assert not flash.host_path("/oscore.json.new").exists()
