# ruff: noqa: PT017, SIM105, UP031 - MicroPython has no pytest or contextlib; %-format is its idiom
"""coap.py against literal RFC 7252 datagrams and malformed ones; CPython and MicroPython."""

import binascii

import coap
from errors import CoapFormatError


def _h(s: str) -> bytes:
    return binascii.unhexlify(s.replace(" ", ""))


def _bad(data: bytes, needle: str) -> None:
    try:
        msg = coap.decode(data)
    except CoapFormatError as e:
        assert needle in str(e), "%r: %r lacks %r" % (data, str(e), needle)
        return
    raise AssertionError("%r decoded to %r" % (data, msg))


def test_rfc7252_figure_get_temperature() -> None:
    # RFC 7252 Appendix A, Figure 16: CON GET mid 0x7d34, Uri-Path "temperature".
    data = _h("40017d34") + b"\xbbtemperature"
    assert coap.encode(coap.CON, coap.GET, 0x7D34, options=[(coap.URI_PATH, b"temperature")]) == (
        data
    )
    msg = coap.decode(data)
    assert (msg.mtype, msg.code, msg.mid, msg.token) == (coap.CON, coap.GET, 0x7D34, b"")
    assert msg.options == [(coap.URI_PATH, b"temperature")]
    assert msg.payload == b""


def test_rfc7252_figure_piggybacked_content() -> None:
    data = _h("60457d34") + b"\xff22.3 C"
    assert coap.encode(coap.ACK, coap.CONTENT, 0x7D34, payload=b"22.3 C") == data
    msg = coap.decode(data)
    assert (msg.mtype, msg.code, msg.payload) == (coap.ACK, coap.CONTENT, b"22.3 C")


def test_token_and_content_format_and_payload() -> None:
    data = coap.encode(
        coap.CON,
        coap.POST,
        0x1234,
        b"\xab\xcd",
        [(coap.CONTENT_FORMAT, coap.uint_option(coap.SENML_CBOR)), (coap.URI_PATH, b"r")],
        b"\x80",
    )
    # Uri-Path (11) sorts before Content-Format (12): deltas 11 and 1.
    assert data == _h("42021234abcd b172 1170 ff80")
    msg = coap.decode(data)
    assert msg.token == b"\xab\xcd"
    assert coap.decode_uint(msg.option(coap.CONTENT_FORMAT)) == 112


def test_extended_option_delta_and_length() -> None:
    # delta 60 = 13 + 47; one-byte value
    assert coap.encode(coap.CON, coap.POST, 1, options=[(coap.SIZE1, b"\x01")]) == _h(
        "40020001 d12f01"
    )
    # delta 2000 = 269 + 1731 (0x06c3)
    assert coap.encode(coap.CON, coap.GET, 1, options=[(2000, b"")]) == _h("40010001 e006c3")
    # length 300 = 269 + 31
    value = b"x" * 300
    data = coap.encode(coap.CON, coap.GET, 1, options=[(coap.URI_PATH, value)])
    assert data[:7] == _h("40010001 be001f")
    assert coap.decode(data).options == [(coap.URI_PATH, value)]
    # length 13 and 268 are the edges of the one-byte extension
    for n in (12, 13, 268, 269, 65535 + 269):
        data = coap.encode(coap.NON, coap.GET, 2, options=[(coap.ETAG, b"e" * n)])
        assert coap.decode(data).option(coap.ETAG) == b"e" * n


def test_options_sorted_stably_repeated_ones_keep_their_order() -> None:
    opts = [
        (coap.URI_QUERY, b"b=2"),
        (coap.URI_PATH, b"fw"),
        (coap.URI_QUERY, b"a=1"),
        (coap.URI_PATH, b"a"),
        (coap.URI_HOST, b"gw"),
    ]
    msg = coap.decode(coap.encode(coap.CON, coap.GET, 9, b"t", opts))
    assert msg.options == [
        (coap.URI_HOST, b"gw"),
        (coap.URI_PATH, b"fw"),
        (coap.URI_PATH, b"a"),
        (coap.URI_QUERY, b"b=2"),
        (coap.URI_QUERY, b"a=1"),
    ]
    assert msg.options_all(coap.URI_PATH) == [b"fw", b"a"]
    assert msg.option(coap.URI_QUERY) == b"b=2"
    assert msg.option(coap.ETAG) is None
    assert msg.options_all(coap.ETAG) == []


def test_message_encode_roundtrips() -> None:
    data = coap.encode(coap.NON, coap.CHANGED, 65535, b"12345678", [(coap.MAX_AGE, b"\x3c")], b"p")
    assert coap.decode(data).encode() == data


def test_empty_ack_and_reset() -> None:
    assert coap.encode(coap.ACK, coap.EMPTY, 0x0102) == _h("60000102")
    assert coap.decode(_h("70000102")).mtype == coap.RST


def test_code_str() -> None:
    assert coap.code_str(coap.CHANGED) == "2.04"
    assert coap.code_str(coap.CONTENT) == "2.05"
    assert coap.code_str(coap.CREATED) == "2.01"
    assert coap.code_str(coap.NOT_FOUND) == "4.04"
    assert coap.code_str(coap.POST) == "0.02"
    assert coap.code_str(coap.SERVICE_UNAVAILABLE) == "5.03"


def test_uint_option_is_minimal() -> None:
    cases = [(0, b""), (1, b"\x01"), (255, b"\xff"), (256, b"\x01\x00"), (65536, b"\x01\x00\x00")]
    for n, raw in cases:
        assert coap.uint_option(n) == raw
        assert coap.decode_uint(raw) == n
    assert coap.uint_option(0xFFFFFFFF) == b"\xff\xff\xff\xff"
    assert coap.decode_uint(b"\x00\x05") == 5


def test_uri_options() -> None:
    assert coap.uri_options("/readings", {"s": 5}) == [
        (coap.URI_PATH, b"readings"),
        (coap.URI_QUERY, b"s=5"),
    ]
    assert coap.uri_options("/fw/a/") == [(coap.URI_PATH, b"fw"), (coap.URI_PATH, b"a")]
    assert coap.uri_options("/") == []
    assert coap.uri_options("/h", ["z=1", "a=2"]) == [
        (coap.URI_PATH, b"h"),
        (coap.URI_QUERY, b"z=1"),
        (coap.URI_QUERY, b"a=2"),
    ]
    assert coap.uri_options("/h", {"z": 1, "a": "x"})[1:] == [
        (coap.URI_QUERY, b"a=x"),
        (coap.URI_QUERY, b"z=1"),
    ]


def test_encode_rejects_out_of_range_fields() -> None:
    for args in ((4, 1, 1), (0, 256, 1), (0, 1, 65536), (0, 1, -1)):
        try:
            coap.encode(*args)
        except ValueError:
            continue
        raise AssertionError("encoded %r" % (args,))
    try:
        coap.encode(coap.CON, coap.GET, 1, b"123456789")
    except ValueError as e:
        assert "token" in str(e)
    else:
        raise AssertionError("encoded a 9-byte token")


def test_short_messages_raise() -> None:
    for n in range(4):
        _bad(_h("40010001")[:n], "shorter")


def test_wrong_version_raises() -> None:
    for first in (0x00, 0x80, 0xC0):
        _bad(bytes((first, 1, 0, 1)), "version")


def test_reserved_token_length_raises() -> None:
    for tkl in range(9, 16):
        _bad(bytes((0x40 | tkl, 1, 0, 1)) + b"\x00" * 16, "token length")


def test_truncated_token_raises() -> None:
    _bad(_h("4801 0001 00112233"), "token")


def test_truncated_options_raise() -> None:
    _bad(_h("40010001 d0"), "delta")
    _bad(_h("40010001 e001"), "delta")
    _bad(_h("40010001 0d"), "length")
    _bad(_h("40010001 0e00"), "length")
    _bad(_h("40010001 b3 6162"), "value")


def test_reserved_nibble_15_raises() -> None:
    _bad(_h("40010001 f1 00"), "delta nibble 15")
    _bad(_h("40010001 1f 00"), "length nibble 15")


def test_payload_marker_without_payload_raises() -> None:
    _bad(_h("40010001 ff"), "payload marker")
    _bad(_h("40010001 b161 ff"), "payload marker")


def test_empty_message_with_bytes_raises() -> None:
    _bad(_h("41000001 00"), "empty")
    _bad(_h("60000001 ff00"), "empty")


def test_every_truncation_decodes_or_raises_format_error() -> None:
    whole = coap.encode(
        coap.CON,
        coap.POST,
        7,
        b"tok",
        [(coap.URI_PATH, b"readings"), (coap.CONTENT_FORMAT, b"\x70"), (2000, b"y" * 20)],
        b"payload",
    )
    for cut in range(len(whole)):
        try:
            coap.decode(whole[:cut])
        except CoapFormatError:
            pass
