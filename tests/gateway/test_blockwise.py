"""Block1 assembly within bounds (RFC 7959 §2.5, §2.9): the spool alone, any sequence of blocks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import BadPayload, IncompleteTransfer, PayloadTooLarge
from gateway.intake.blockwise import Block1Spool


def spool(**kw: int) -> Block1Spool:
    clock = [0.0]
    made = Block1Spool(
        max_bytes=kw.get("max_bytes", 1024),
        max_transfers=kw.get("max_transfers", 4),
        lifetime_s=10,
        clock=lambda: clock[0],
    )
    made.clock = clock  # type: ignore[attr-defined]
    return made


def test_blocks_in_order_give_the_whole_body_once() -> None:
    s = spool()
    body = bytes(range(100))
    assert s.feed("p", "/readings", number=0, more=True, szx=1, payload=body[:32]) is None
    assert s.feed("p", "/readings", number=1, more=True, szx=1, payload=body[32:64]) is None
    assert s.feed("p", "/readings", number=1, more=True, szx=1, payload=body[32:64]) is None
    assert s.feed("p", "/readings", number=2, more=True, szx=1, payload=body[64:96]) is None
    assert s.feed("p", "/readings", number=3, more=False, szx=1, payload=body[96:]) == body
    assert len(s) == 0


@pytest.mark.parametrize(
    ("number", "payload", "error"),
    [
        (3, b"x" * 32, IncompleteTransfer),  # a gap
        (1, b"y" * 32, IncompleteTransfer),  # an overlap that differs
        (1, b"x" * 10, BadPayload),  # a middle block of the wrong size
    ],
)
def test_a_block_that_does_not_continue_is_refused_and_forgets_the_transfer(
    number: int, payload: bytes, error: type[Exception]
) -> None:
    s = spool()
    s.feed("p", "/r", number=0, more=True, szx=1, payload=b"x" * 32)
    s.feed("p", "/r", number=1, more=True, szx=1, payload=b"x" * 32)
    with pytest.raises(error):
        s.feed("p", "/r", number=number, more=True, szx=1, payload=payload)
    with pytest.raises(IncompleteTransfer):
        s.feed("p", "/r", number=2, more=False, szx=1, payload=b"x")


def test_size_over_the_limit_is_refused_at_once_from_size1_or_the_blocks() -> None:
    s = spool(max_bytes=64)
    with pytest.raises(PayloadTooLarge):
        s.feed("p", "/r", number=0, more=True, szx=1, payload=b"x" * 32, size1=1000)
    s.feed("p", "/r", number=0, more=True, szx=1, payload=b"x" * 32)
    s.feed("p", "/r", number=1, more=True, szx=1, payload=b"x" * 32)
    with pytest.raises(PayloadTooLarge):
        s.feed("p", "/r", number=2, more=False, szx=1, payload=b"x")


def test_new_transfers_evict_the_oldest_and_stale_ones_expire() -> None:
    s = spool(max_transfers=2)
    for peer in "abc":
        s.feed(peer, "/r", number=0, more=True, szx=0, payload=b"x" * 16)
    assert (len(s), s.evicted) == (2, 1)
    with pytest.raises(IncompleteTransfer):
        s.feed("a", "/r", number=1, more=False, szx=0, payload=b"x")
    s.clock[0] = 11.0  # type: ignore[attr-defined]
    with pytest.raises(IncompleteTransfer):
        s.feed("b", "/r", number=1, more=False, szx=0, payload=b"x")
    assert s.expired == 2


block = st.tuples(
    st.sampled_from(["a", "b", "c", "d", "e"]),
    st.integers(0, 40),
    st.booleans(),
    st.integers(0, 7),
    st.binary(max_size=300),
    st.none() | st.integers(0, 5000),
)


@given(st.lists(block, max_size=60))
@settings(max_examples=500, deadline=None, derandomize=True)
def test_any_blocks_keep_the_spool_within_bounds_and_raise_only_refusals(
    blocks: list[tuple[str, int, bool, int, bytes, int | None]],
) -> None:
    s = spool(max_bytes=2048, max_transfers=3)
    for peer, number, more, szx, payload, size1 in blocks:
        try:
            body = s.feed(
                peer, "/r", number=number, more=more, szx=szx, payload=payload, size1=size1
            )
        except (BadPayload, IncompleteTransfer, PayloadTooLarge):
            continue
        assert body is None or len(body) <= 2048
        assert len(s) <= 3
        assert all(len(t.body) <= 2048 for t in s._transfers.values())
