"""Serving cached releases block-wise (RFC 7959 Block2, 1024-byte blocks, ETags), to aiocoap
and to libcoap's client, and refusing every path that names nothing."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiocoap import DELETE, GET, POST, PUT, Context, Message
from aiocoap.numbers.codes import Code

from fleet.release import encode_release
from gateway.codec import coap
from gateway.daemon import Gateway
from gateway.intake.echo import AddressCheck
from gateway.ota.cache import ReleaseCache
from gateway.store.schema import prepare
from tests.gateway.conftest import Client, gateway_config
from tests.gateway.test_hostile_input import Peer
from tests.gateway.test_interop import coap_client
from tests.release.chain import APP_FILES, DAY, NOW, Chain, seeded_key

#: A file of several blocks, the last one partial; and the test chain's small files.
FILES = {**APP_FILES, "big.mpy": random.Random(7).randbytes(5000)}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Gateway, bytes]]:
    """A started gateway with release 7 (``FILES``) cached; and that release's manifest."""
    chain = Chain()
    (tmp_path / "root.pub").write_bytes(chain.root_public)
    config = gateway_config(tmp_path / "state", **{"ota.root_public_key": tmp_path / "root.pub"})
    config.state_dir.mkdir(parents=True)
    prepare(config.db_path)
    manifest = chain.manifest(seq=7, files=FILES)
    cache = ReleaseCache(config, chain.root_public)
    try:
        cache.add(encode_release(manifest, FILES), now=NOW + DAY)
    finally:
        cache.close()
    gateway = Gateway(config)
    await gateway.start()
    try:
        yield gateway, manifest
    finally:
        await gateway.stop()


async def verify_address(client: Client) -> None:
    """Answer the gateway's Echo challenge once (RFC 9175 §2.4), as a board's client does:
    this host then gets full blocks."""
    first = await get(client, "ota/7/manifest")
    assert first.code == Code.UNAUTHORIZED
    request = Message(code=GET, uri=client.uri("ota/7/manifest"))
    request.opt.echo = first.opt.echo
    answer = await client.context.request(request, handle_blockwise=False).response
    assert answer.code == Code.CONTENT


@pytest.fixture
async def ota_client(served: tuple[Gateway, bytes]) -> AsyncIterator[Client]:
    """A client on a host that has answered the gateway's Echo challenge."""
    context = await Context.create_client_context()
    host, port = served[0].bound_address
    client = Client(context, host, port)
    try:
        await verify_address(client)
        yield client
    finally:
        await context.shutdown()


async def get(client: Client, path: str, block2: tuple[int, bool, int] | None = None) -> Message:
    request = Message(code=GET, uri=client.uri(path))
    if block2 is not None:
        request.opt.block2 = block2
    response: Message = await client.context.request(request, handle_blockwise=False).response
    return response


def etag(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:8]


async def test_a_block_wise_fetch_reassembles_the_exact_file(ota_client: Client) -> None:
    request = Message(code=GET, uri=ota_client.uri("ota/7/big.mpy"))
    response = await ota_client.context.request(request).response  # aiocoap follows Block2
    assert response.code == Code.CONTENT
    assert response.payload == FILES["big.mpy"]
    assert response.opt.etag == etag(FILES["big.mpy"])


async def test_every_block_is_1024_bytes_with_one_stable_etag(ota_client: Client) -> None:
    data = FILES["big.mpy"]
    blocks, tags, number, more = [], set(), 0, True
    while more:
        response = await get(ota_client, "ota/7/big.mpy", (number, False, 6))
        assert response.code == Code.CONTENT
        assert response.opt.block2.block_number == number
        assert response.opt.block2.size_exponent == 6
        assert response.opt.size2 == len(data)
        assert response.opt.content_format == 42
        tags.add(response.opt.etag)
        blocks.append(response.payload)
        more = response.opt.block2.more
        number += 1
    assert [len(b) for b in blocks] == [1024] * 4 + [5000 - 4096]
    assert b"".join(blocks) == data
    assert tags == {etag(data)}
    # Without Block2 the first block comes, 1024 bytes, marked as having more.
    first = await get(ota_client, "ota/7/big.mpy")
    assert (first.payload, first.opt.block2.more) == (data[:1024], True)
    # A smaller block size is honoured; a larger one is cut to 1024.
    small = await get(ota_client, "ota/7/big.mpy", (3, False, 2))
    assert small.payload == data[192:256]
    assert small.opt.block2.size_exponent == 2
    large = await get(ota_client, "ota/7/big.mpy", (1, False, 7))  # BERT-sized ask
    assert large.payload == data[1024:2048]


async def test_the_manifest_is_served_as_cached(
    served: tuple[Gateway, bytes], ota_client: Client
) -> None:
    manifest = served[1]
    response = await ota_client.context.request(
        Message(code=GET, uri=ota_client.uri("ota/7/manifest"))
    ).response
    assert response.payload == manifest
    assert response.opt.content_format == 18
    assert response.opt.etag == etag(manifest)
    small = await get(ota_client, "ota/7/app.mpy", (0, False, 6))
    assert small.payload == FILES["app.mpy"][:1024]


#: Paths (as Uri-Path segments, so no client tidies them) that name nothing served.
NOTHING = [
    ("ota",),
    ("ota", "7"),
    ("ota", "8", "manifest"),  # no such release
    ("ota", "7", "absent.mpy"),  # no such file
    ("ota", "0", "manifest"),
    ("ota", "007", "manifest"),
    ("ota", "-7", "manifest"),
    ("ota", "7e3", "manifest"),
    ("ota", "9" * 30, "manifest"),
    ("ota", "7", "manifest", "more"),
    ("ota", "7", ".."),
    ("ota", "7", "../gateway.db"),
    ("ota", "7", ".hidden"),
    ("ota", "7", "x" * 200),
    ("ota", "7", "\x00"),
    ("ota", "7", ""),
    ("ota", "", "manifest"),
    ("ota", "seven", "app.mpy"),
    ("ota", "\uff17", "manifest"),  # a digit, but not an ASCII one
]


async def test_a_path_naming_nothing_gets_4_04_with_a_diagnostic(ota_client: Client) -> None:
    for path in NOTHING:
        request = Message(code=GET, uri=ota_client.uri(""))
        request.opt.uri_path = path
        response = await ota_client.context.request(request, handle_blockwise=False).response
        assert response.code == Code.NOT_FOUND, path
        assert 0 < len(response.payload) <= 120, path


async def test_only_get_is_allowed(ota_client: Client) -> None:
    for code in (POST, PUT, DELETE):
        request = Message(code=code, uri=ota_client.uri("ota/7/manifest"), payload=b"x")
        response = await ota_client.context.request(request, handle_blockwise=False).response
        assert response.code == Code.METHOD_NOT_ALLOWED, code


async def test_a_block_past_the_end_gets_4_00(ota_client: Client) -> None:
    response = await get(ota_client, "ota/7/big.mpy", (5, False, 6))
    assert response.code == Code.BAD_REQUEST
    huge = await get(ota_client, "ota/7/big.mpy", (2**19, False, 6))
    assert huge.code == Code.BAD_REQUEST


async def test_a_file_damaged_on_the_gateway_is_not_served(
    served: tuple[Gateway, bytes], ota_client: Client
) -> None:
    path = served[0].config.releases_dir / "7" / "senml.mpy"
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    response = await get(ota_client, "ota/7/senml.mpy")
    assert response.code == Code.INTERNAL_SERVER_ERROR
    assert b"damaged" in response.payload


async def test_an_evicted_release_is_no_longer_served(
    served: tuple[Gateway, bytes], ota_client: Client
) -> None:
    assert (await get(ota_client, "ota/7/app.mpy")).code == Code.CONTENT  # now kept in memory
    chain = Chain()
    rotated = Chain(release=seeded_key("simpul test release 2"))
    revoking = chain.revocations((chain.release_kid,), seq=2)
    cache = ReleaseCache(served[0].config, chain.root_public)
    try:
        added = cache.add(
            encode_release(rotated.manifest(seq=8, revocations=revoking), APP_FILES),
            now=NOW + DAY,
        )
    finally:
        cache.close()
    assert added.evicted == (7,)
    assert (await get(ota_client, "ota/7/app.mpy")).code == Code.NOT_FOUND
    assert (await get(ota_client, "ota/8/app.mpy")).code == Code.CONTENT


@pytest.mark.interop
async def test_libcoap_fetches_a_file_block_wise(
    served: tuple[Gateway, bytes], ota_client: Client, tmp_path: Path
) -> None:
    _, port = served[0].bound_address  # this host answered the Echo challenge (ota_client)
    out = tmp_path / "fetched"
    code, _, err = await coap_client(
        "-m", "get", "-b", "1024", "-o", str(out), f"coap://127.0.0.1:{port}/ota/7/big.mpy"
    )
    assert code == 0, err
    assert out.read_bytes() == FILES["big.mpy"]
    code, stdout, err = await coap_client(
        "-m", "get", "-b", "1024", f"coap://127.0.0.1:{port}/ota/8/manifest"
    )
    assert "4.04" in err + stdout
    await asyncio.sleep(0)


async def test_an_unchecked_host_gets_a_small_echo_challenge_not_a_block(
    served: tuple[Gateway, bytes],
) -> None:
    """Blocks are forty times a request's size: a forged source address must not get them."""
    peer = Peer(served[0], "127.0.0.4")
    try:
        path = (coap.Option(11, b"ota"), coap.Option(11, b"7"), coap.Option(11, b"big.mpy"))
        request = coap.encode(coap.Datagram(coap.CON, 1, 1, b"\x01", path))
        answer = await peer.ask(request)
        assert answer is not None
        challenge = coap.decode(answer)
        assert challenge.code == 4 << 5 | 1  # 4.01
        echo = challenge.values(252)
        assert len(echo) == 1
        assert len(echo[0]) == 8
        assert len(answer) <= len(request)
        wrong = (*path, coap.Option(252, b"x" * 8))
        answer = await peer.ask(coap.encode(coap.Datagram(coap.CON, 1, 2, b"\x02", wrong)))
        assert answer is not None
        assert coap.decode(answer).code == 4 << 5 | 1
        right = (*path, coap.Option(252, echo[0]))
        answer = await peer.ask(coap.encode(coap.Datagram(coap.CON, 1, 3, b"\x03", right)))
        assert answer is not None
        block = coap.decode(answer)
        assert (block.code, block.payload) == (69, FILES["big.mpy"][:1024])
        # Checked now: the next request needs no Echo.
        answer = await peer.ask(coap.encode(coap.Datagram(coap.CON, 1, 4, b"\x04", path)))
        assert answer is not None
        assert coap.decode(answer).code == 69
    finally:
        peer.close()


def test_an_echo_is_good_for_its_host_and_a_minute_and_verifies_for_a_while() -> None:
    clock = [1000.0]
    check = AddressCheck(slot_s=30, verified_for_s=300, clock=lambda: clock[0])
    echo = check.challenge("10.0.0.5")
    assert not check.verified("10.0.0.6", echo)  # another host's echo proves nothing
    clock[0] += 45
    assert check.verified("10.0.0.5", echo)
    clock[0] += 299
    assert check.verified("10.0.0.5", None)
    clock[0] += 2
    assert not check.verified("10.0.0.5", None)  # verification lapsed
    assert not check.verified("10.0.0.5", echo)  # and the old echo with it
