"""coap.py cross-checked against aiocoap's own message codec (CPython only)."""

from typing import Any

import aiocoap
import coap
import pytest
from aiocoap.numbers.optionnumbers import OptionNumber
from aiocoap.optiontypes import OpaqueOption
from errors import CoapFormatError
from hypothesis import given, settings
from hypothesis import strategies as st

# Options whose value aiocoap keeps as given: opaque ones, text ones with ASCII values, and
# numbers it does not know (elective and critical).
OPAQUE = [coap.IF_MATCH, coap.ETAG, 300, 2000, 2049, 65000]
TEXT = [coap.URI_HOST, coap.LOCATION_PATH, coap.URI_PATH, coap.URI_QUERY, coap.PROXY_URI]
ASCII = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789=&-._", max_size=300)

OPTION = st.one_of(
    st.tuples(st.sampled_from(OPAQUE), st.binary(max_size=300)),
    st.tuples(st.sampled_from(TEXT), ASCII.map(str.encode)),
)
MTYPE = st.sampled_from([coap.CON, coap.NON, coap.ACK, coap.RST])
CODE = st.sampled_from(
    [coap.GET, coap.POST, coap.PUT, coap.DELETE, coap.CHANGED, coap.CONTENT, coap.NOT_FOUND]
)
MID = st.integers(min_value=0, max_value=0xFFFF)
TOKEN = st.binary(max_size=8)
PAYLOAD = st.binary(max_size=200)


def aiocoap_message(
    mtype: int, code: int, mid: int, token: bytes, options: list[tuple[int, bytes]], payload: bytes
) -> Any:
    msg = aiocoap.Message(code=aiocoap.Code(code), payload=payload)
    msg.mtype = aiocoap.Type(mtype)
    msg.mid = mid
    msg.token = token
    for number, value in options:
        msg.opt.add_option(OpaqueOption(OptionNumber(number), value))
    return msg


def sorted_stably(options: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    return sorted(options, key=lambda o: o[0])


def raw_options(msg: Any) -> list[tuple[int, bytes]]:
    return [(int(o.number), o.encode()) for o in msg.opt.option_list()]


@settings(max_examples=400, deadline=None)
@given(MTYPE, CODE, MID, TOKEN, st.lists(OPTION, max_size=8), PAYLOAD)
def test_aiocoap_decodes_what_encode_writes(
    mtype: int, code: int, mid: int, token: bytes, options: Any, payload: bytes
) -> None:
    data = coap.encode(mtype, code, mid, token, options, payload)
    msg = aiocoap.Message.decode(data)
    assert (int(msg.mtype), int(msg.code), msg.mid, msg.token) == (mtype, code, mid, token)
    assert raw_options(msg) == sorted_stably(options)
    assert msg.payload == payload


@settings(max_examples=400, deadline=None)
@given(MTYPE, CODE, MID, TOKEN, st.lists(OPTION, max_size=8), PAYLOAD)
def test_decode_reads_what_aiocoap_writes_byte_for_byte(
    mtype: int, code: int, mid: int, token: bytes, options: Any, payload: bytes
) -> None:
    data = aiocoap_message(mtype, code, mid, token, options, payload).encode()
    msg = coap.decode(data)
    assert (msg.mtype, msg.code, msg.mid, msg.token) == (mtype, code, mid, token)
    assert msg.options == sorted_stably(options)
    assert msg.payload == payload
    assert coap.encode(mtype, code, mid, token, options, payload) == data


def test_typed_options_agree_with_aiocoap() -> None:
    msg = aiocoap.Message(code=aiocoap.POST, payload=b"\x80", uri="coap://gw/readings?s=5")
    msg.mtype = aiocoap.CON
    msg.mid = 7
    msg.token = b"\x01\x02"
    msg.opt.content_format = coap.SENML_CBOR
    msg.opt.block1 = aiocoap.optiontypes.BlockOption.BlockwiseTuple(3, True, 6)
    msg.opt.size1 = 70000
    data = msg.encode()
    ours = coap.decode(data)
    assert ours.options_all(coap.URI_PATH) == [b"readings"]
    assert ours.option(coap.URI_QUERY) == b"s=5"
    assert coap.decode_uint(ours.option(coap.CONTENT_FORMAT)) == 112
    assert coap.decode_uint(ours.option(coap.SIZE1)) == 70000
    assert coap.decode_uint(ours.option(coap.BLOCK1)) == 3 << 4 | 1 << 3 | 6
    opts = [*coap.uri_options("/readings", {"s": 5}), (coap.URI_HOST, b"gw")]
    opts += [(coap.CONTENT_FORMAT, coap.uint_option(112)), (coap.SIZE1, coap.uint_option(70000))]
    opts.append((coap.BLOCK1, coap.uint_option(3 << 4 | 1 << 3 | 6)))
    assert coap.encode(coap.CON, coap.POST, 7, b"\x01\x02", opts, b"\x80") == data


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_uint_option_matches_aiocoap(n: int) -> None:
    msg = aiocoap.Message(code=aiocoap.GET)
    msg.opt.size2 = n
    assert raw_options(msg) == [(coap.SIZE2, coap.uint_option(n))]
    assert coap.decode_uint(coap.uint_option(n)) == n


@settings(max_examples=1000, deadline=None)
@given(st.binary(min_size=0, max_size=40))
def test_any_datagram_decodes_canonically_or_raises_format_error(data: bytes) -> None:
    try:
        msg = coap.decode(data)
    except CoapFormatError:
        return
    assert msg.encode() == data


@settings(max_examples=1000, deadline=None)
@given(st.binary(min_size=4, max_size=40))
def test_what_decode_accepts_aiocoap_accepts_alike(data: bytes) -> None:
    data = bytes([0x40 | data[0] & 0x3F]) + data[1:]  # version 1, so most get past the header
    try:
        ours = coap.decode(data)
    except CoapFormatError:
        return
    try:
        theirs = aiocoap.Message.decode(data)
    except aiocoap.error.UnparsableMessage as e:
        pytest.fail(f"decode accepted what aiocoap finds malformed: {e}")
    except ValueError:
        return  # aiocoap also interprets option values (UTF-8 text, block sizes): not framing
    assert [int(o.number) for o in theirs.opt.option_list()] == [n for n, _ in ours.options]
    assert (int(theirs.mtype), int(theirs.code), theirs.mid) == (ours.mtype, ours.code, ours.mid)
    assert theirs.token == ours.token
    assert theirs.payload == ours.payload


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (bytes.fromhex("40010001ff"), "payload marker"),
        (bytes.fromhex("4f010001"), "token length"),
    ],
)
def test_stricter_than_aiocoap_where_rfc7252_says_format_error(data: bytes, needle: str) -> None:
    aiocoap.Message.decode(data)  # lenient there
    with pytest.raises(CoapFormatError, match=needle):
        coap.decode(data)
