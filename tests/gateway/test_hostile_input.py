"""A live gateway under hostile datagrams: each finding of the attack on it, with its bytes.

Every test sends real UDP to an in-process gateway and checks the answer RFC 7252 names,
that nothing was stored from the refused request, that the refusal was counted, and that
no traceback was logged for a peer's mistake.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from aiocoap import GET, Message

from gateway.codec import coap
from gateway.daemon import Gateway
from tests.gateway.conftest import Client, db_rows, gateway_config, senml_pack


class Peer:
    """A raw UDP socket on its own loopback address: datagrams in, answers out."""

    def __init__(self, gateway: Gateway, host: str = "127.0.0.1") -> None:
        self.target = ("127.0.0.1", gateway.bound_address[1])
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)

    async def ask(self, data: bytes, wait: float = 5.0) -> bytes | None:
        """Send ``data``; the first answer within ``wait`` seconds, or None."""
        self.sock.sendto(data, self.target)
        return await self.answer(wait)

    async def exchange(self, data: bytes, tries: int = 5) -> bytes | None:
        """Send ``data`` as a CoAP client sends a CON: again after each second unanswered."""
        for _ in range(tries):
            answer = await self.ask(data, wait=1.0)
            if answer is not None:
                return answer
        return None

    async def answer(self, wait: float = 1.0) -> bytes | None:
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.sock_recv(self.sock, 4096), wait)
        except TimeoutError:
            return None

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
async def lab_gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    """A gateway with small bounds, so a test can reach them, and its stats open (lab)."""
    gw = Gateway(
        gateway_config(
            tmp_path / "state",
            **{
                "limits.max_dedup_entries": 50,
                "limits.max_block1_transfers": 4,
                "limits.peer_rate": 50.0,
                "limits.peer_burst": 100.0,
                "uplinks.batch_file.enabled": False,
            },
        )
    )
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


@pytest.fixture
def peer(gateway: Gateway) -> Iterator[Peer]:
    p = Peer(gateway)
    yield p
    p.close()


def stored(gateway: Gateway) -> int:
    return int(db_rows(gateway.config.state_dir, "SELECT count(*) FROM readings")[0][0])


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


def post(token: bytes, mid: int, *extra: coap.Option, payload: bytes = b"") -> bytes:
    """A CON POST /readings (SenML-CBOR) with ``extra`` options."""
    options = (coap.Option(11, b"readings"), coap.Option(12, b"\x70"), *extra)
    return coap.encode(coap.Datagram(coap.CON, 2, mid, token, options, payload))


PACK = cbor2.dumps(senml_pack("aq-01"))


# -- finding 4: a non-UTF-8 Uri-Path ------------------------------------------------------


async def test_a_uri_path_that_is_not_utf8_gets_4_02_and_no_traceback(
    gateway: Gateway, peer: Peer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    for _ in range(20):
        answer = await peer.ask(bytes.fromhex("4002010bb1ff"))
        assert answer is not None
        parsed = coap.decode(answer)
        assert (parsed.mtype, parsed.code, parsed.mid) == (coap.ACK, coap.BAD_OPTION, 0x010B)
        assert len(answer) <= 3 * 6 + 6
    no_tracebacks(caplog)
    assert gateway.stats()["screened"]["bad_option"] == 20
    lines = [r for r in caplog.records if "bad_option" in r.getMessage()]
    assert len(lines) == 1  # once per kind, not once per datagram


# -- finding 5: RFC 7252's rules on options ----------------------------------------------


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ((coap.Option(25, b"\x01"),), coap.BAD_OPTION),  # unknown critical option (9 is OSCORE)
        ((coap.Option(35, b"coap://elsewhere/readings"),), coap.PROXYING_NOT_SUPPORTED),
        ((coap.Option(39, b"coap"),), coap.PROXYING_NOT_SUPPORTED),
        ((coap.Option(3, b"a"), coap.Option(3, b"b")), coap.BAD_OPTION),  # Uri-Host twice
        ((coap.Option(1, b"\x01\x02"),), coap.PRECONDITION_FAILED),  # If-Match fails
    ],
)
async def test_requests_rfc_7252_refuses_are_refused_and_nothing_is_stored(
    gateway: Gateway, peer: Peer, options: tuple[coap.Option, ...], code: int
) -> None:
    answer = await peer.ask(post(b"\x07", 77, *options, payload=PACK))
    assert answer is not None
    assert coap.decode(answer).code == code
    good = await peer.ask(post(b"\x08", 78, payload=PACK))
    assert good is not None
    assert coap.decode(good).code == 68  # 2.04: the same pack without the bad option
    assert stored(gateway) == 1


async def test_an_unknown_elective_option_is_ignored(gateway: Gateway, peer: Peer) -> None:
    answer = await peer.ask(post(b"\x09", 79, coap.Option(2048, b"x"), payload=PACK))
    assert answer is not None
    assert coap.decode(answer).code == 68
    assert stored(gateway) == 1


async def test_a_format_error_in_a_con_gets_rst_and_in_a_non_silence(
    gateway: Gateway, peer: Peer
) -> None:
    assert await peer.ask(bytes.fromhex("4902abcd")) == bytes.fromhex("7000abcd")
    assert await peer.ask(bytes.fromhex("5902abcd"), wait=0.3) is None
    assert gateway.stats()["screened"]["format_error"] == 2


# -- finding 2: a Block1 continuation that does not continue -----------------------------


def block1(number: int, more: bool, szx: int = 2) -> coap.Option:
    value = number << 4 | (8 if more else 0) | szx
    return coap.Option(27, value.to_bytes(max((value.bit_length() + 7) // 8, 1), "big"))


async def test_a_block1_block_that_does_not_continue_gets_4_08(
    gateway: Gateway, peer: Peer
) -> None:
    body = PACK + b"\x00" * 200  # several 64-byte blocks
    first = await peer.ask(post(b"\x01", 1, block1(0, True), payload=body[:64]))
    assert first is not None
    assert coap.decode(first).code == 2 << 5 | 31  # 2.31 Continue
    skipped = await peer.ask(post(b"\x01", 2, block1(2, True), payload=body[128:192]))
    assert skipped is not None
    assert coap.decode(skipped).code == 4 << 5 | 8
    orphan = await peer.ask(post(b"\x01", 3, block1(1, False), payload=body[64:80]))
    assert orphan is not None
    assert coap.decode(orphan).code == 4 << 5 | 8  # the transfer was forgotten
    assert gateway.stats()["refused"]["incomplete_transfer"] == 2


async def test_a_body_sent_in_blocks_is_stored_whole(gateway: Gateway, peer: Peer) -> None:
    pack = cbor2.dumps(senml_pack("aq-02", names=tuple(f"q{i}" for i in range(12))))
    blocks = [pack[i : i + 64] for i in range(0, len(pack), 64)]
    for number, chunk in enumerate(blocks):
        more = number < len(blocks) - 1
        answer = await peer.ask(post(b"\x02", 10 + number, block1(number, more), payload=chunk))
        assert answer is not None
        assert coap.decode(answer).code == (2 << 5 | 31 if more else 68)
    assert stored(gateway) == 12


# -- finding 3: memory bounded whatever the traffic ---------------------------------------


async def test_the_deduplication_cache_and_block1_state_stay_within_their_bounds(
    lab_gateway: Gateway,
) -> None:
    peers = [Peer(lab_gateway) for _ in range(12)]
    try:
        for i, p in enumerate(peers):  # twelve first blocks: only four are kept
            await p.ask(post(b"\x03", 500 + i, block1(0, True), payload=b"\xa0" * 64))
        for mid in range(300):  # 300 exchanges: only 50 are remembered
            p = peers[mid % len(peers)]
            p.sock.sendto(post(b"", 1000 + mid, payload=b"\xf6"), p.target)
        await asyncio.sleep(1.0)
        intake = lab_gateway.stats()["intake"]
        assert intake["dedup_entries"] <= 50
        assert intake["block1_transfers"] <= 4
        assert intake["block1_evicted"] >= 8
    finally:
        for p in peers:
            p.close()


async def test_a_flooding_peer_is_dropped_while_a_board_beside_it_is_served(
    lab_gateway: Gateway,
) -> None:
    flood = Peer(lab_gateway, "127.0.0.2")
    board = Peer(lab_gateway)
    try:
        started = time.monotonic()
        for mid in range(400):  # far past its burst of 100 at 50 a second
            flood.sock.sendto(post(b"", mid, payload=b"\xf6"), flood.target)
        # The kernel may drop the board's first datagram behind the flood's; it resends.
        answer = await board.exchange(post(b"\x04", 9, payload=PACK))
        assert answer is not None
        assert coap.decode(answer).code == 68
        await asyncio.sleep(0.5)
        elapsed = time.monotonic() - started
        stats = lab_gateway.stats()
        assert stats["screened"]["rate_limited"] >= 100
        # What got through is the flooder's share, refused as the garbage it is.
        assert stats["refused"].get("bad_payload", 0) <= 100 + 50 * elapsed
        assert stored(lab_gateway) == 1
    finally:
        flood.close()
        board.close()


# -- finding 7: no amplification, no disclosure -------------------------------------------


async def test_gateway_statistics_are_refused_small_and_unlisted(
    gateway: Gateway, peer: Peer
) -> None:
    for mtype in (coap.CON, coap.NON):
        request = coap.encode(
            coap.Datagram(mtype, 1, 40 + mtype, b"\x05", (coap.Option(11, b"gateway"),))
        )
        answer = await peer.ask(request)
        assert answer is not None
        assert coap.decode(answer).code == 4 << 5 | 1  # 4.01 Unauthorized
        assert len(answer) <= 3 * len(request)
    wkc = coap.encode(
        coap.Datagram(
            coap.CON, 1, 60, b"", (coap.Option(11, b".well-known"), coap.Option(11, b"core"))
        )
    )
    answer = await peer.ask(wkc)
    assert answer is not None
    assert len(answer) <= 3 * len(wkc)
    assert coap.decode(answer).code == 69  # 2.05, its first block


async def test_the_whole_resource_list_comes_block_by_block(client: Client) -> None:
    response = await client.context.request(
        Message(code=GET, uri=client.uri(".well-known/core"))
    ).response
    links = response.payload.decode()
    assert '</readings>;ct="112 110";rt="simpul.readings"' in links
    assert "/gateway" not in links


# -- finding 8: one request cannot corrupt the registry -----------------------------------


async def test_an_implausible_sequence_jump_is_an_anomaly_not_the_boards_new_mark(
    gateway: Gateway, client: Client
) -> None:
    def pack(at: int) -> Any:
        return senml_pack("aq-09", start_s=at)

    assert (await client.post_pack(pack(1_700_000_000), "?s=0&n=1")).code.is_successful()
    forged = await client.post_pack(pack(1_700_000_010), "?s=9007199254740992&n=1")
    assert forged.code.is_successful()  # stored: it may be real; but not believed
    assert (await client.post_pack(pack(1_700_000_020), "?s=5&n=1")).code.is_successful()
    board = gateway.store.board("aq-09")
    assert board is not None
    assert (board.last_seq, board.missed, board.anomalies) == (5, 4, 1)


async def test_a_replayed_datagram_does_not_move_the_boards_address(gateway: Gateway) -> None:
    original, replayer = Peer(gateway), Peer(gateway, "127.0.0.3")
    try:
        datagram = post(b"\x06", 4242, payload=PACK)
        assert await original.ask(datagram) is not None
        home = gateway.store.board("aq-01")
        assert home is not None
        assert await replayer.ask(datagram) is not None
        after = gateway.store.board("aq-01")
        assert after is not None
        assert (after.address, after.last_seen_ms) == (home.address, home.last_seen_ms)
        assert after.address is not None
        assert after.address.startswith("127.0.0.1:")
    finally:
        original.close()
        replayer.close()
