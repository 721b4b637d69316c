"""The CoAP datagram codec and the request checks of RFC 7252, against literal bytes."""

from __future__ import annotations

import random

import pytest
from aiocoap import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.codec import coap
from gateway.intake.gate import Gate

# CON POST /readings, token 0x70, Content-Format 112, payload 0x80.
POST_READINGS = bytes.fromhex("4102010201b872656164696e67731170ff80")


def test_a_request_decodes_field_by_field_and_encodes_back_to_the_same_bytes() -> None:
    message = coap.decode(POST_READINGS)
    assert (message.mtype, message.code, message.mid, message.token) == (
        coap.CON,
        2,
        0x0102,
        b"\x01",
    )
    assert message.options == (coap.Option(11, b"readings"), coap.Option(12, b"\x70"))
    assert message.payload == b"\x80"
    assert message.path == ("readings",)
    assert coap.encode(message) == POST_READINGS


def test_options_with_extended_numbers_and_lengths_round_trip() -> None:
    long_query = coap.Option(15, b"q" * 300)  # length 14: two extra bytes
    echo = coap.Option(252, b"\x01" * 8)  # delta 13 then 14 after it
    message = coap.Datagram(coap.NON, 1, 7, b"", (long_query, echo))
    data = coap.encode(message)
    assert coap.decode(data) == message
    assert data[4] == 0xDE  # delta 13 (15 - 0), length 14


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x40\x01\x00", "shorter than a CoAP header"),
        (b"\x80\x01\x00\x01", "version 2"),
        (bytes.fromhex("4902abcd"), "token length 9"),
        (bytes.fromhex("42010001aa"), "token runs past the end"),
        (bytes.fromhex("40010001f0"), "nibble 15 is reserved"),
        (bytes.fromhex("40010001b3aa"), "option value runs past the end"),
        (bytes.fromhex("40010001d0"), "option header runs past the end"),
        (bytes.fromhex("40010001ff"), "payload marker with no payload"),
        (bytes.fromhex("40000001ff00"), "an empty message carries only a header"),
        (bytes.fromhex("40e00001"), "code class 7 is reserved"),
        (bytes.fromhex("70450001"), "a reset is always empty"),
        (bytes.fromhex("50000001"), "a non-confirmable message is never empty"),
        (bytes.fromhex("60020001"), "an acknowledgement never carries a request"),
    ],
)
def test_format_errors_are_named(data: bytes, why: str) -> None:
    with pytest.raises(coap.FormatError, match=why):
        coap.decode(data)


def verdict(*options: coap.Option) -> coap.Verdict:
    return coap.check_request(coap.Datagram(coap.CON, 2, 1, b"", options))


@pytest.mark.parametrize(
    ("options", "code", "reason"),
    [
        ((coap.Option(13, b"\x01"),), coap.BAD_OPTION, "bad_option"),  # unknown critical
        ((coap.Option(11, b"\xff"),), coap.BAD_OPTION, "bad_option"),  # not UTF-8
        ((coap.Option(3, b"a"), coap.Option(3, b"b")), coap.BAD_OPTION, "bad_option"),
        ((coap.Option(27, b"\x00" * 4),), coap.BAD_OPTION, "bad_option"),  # Block1 too long
        ((coap.Option(35, b"coap://x/"),), coap.PROXYING_NOT_SUPPORTED, "proxying"),
        ((coap.Option(39, b"coap"),), coap.PROXYING_NOT_SUPPORTED, "proxying"),
        ((coap.Option(1, b"\x01"),), coap.PRECONDITION_FAILED, "precondition"),
        ((coap.Option(5, b""),), coap.PRECONDITION_FAILED, "precondition"),
    ],
)
def test_requests_the_rfc_says_to_refuse_are_refused_with_its_code(
    options: tuple[coap.Option, ...], code: int, reason: str
) -> None:
    refusal = verdict(*options).refusal
    assert refusal is not None
    assert (refusal.code, refusal.reason) == (code, reason)


def test_unknown_or_malformed_elective_options_are_ignored_not_refused() -> None:
    found = verdict(
        coap.Option(11, b"readings"), coap.Option(12, b"\x00\x00\x70"), coap.Option(64, b"x")
    )
    assert found.refusal is None
    assert found.ignored == (12, 64)
    kept = coap.without(coap.decode(POST_READINGS), found.ignored)
    assert [o.number for o in kept.options] == [11]


def test_an_empty_if_match_on_an_existing_resource_is_met() -> None:
    assert verdict(coap.Option(1, b""), coap.Option(11, b"readings")).refusal is None


@pytest.mark.parametrize("size", [4, 10, 40])
def test_an_answer_never_exceeds_its_budget_and_matches_the_request(size: int) -> None:
    request = coap.decode(POST_READINGS)
    data = coap.answer(request, coap.BAD_OPTION, "é" * 100, budget=size + 8, rng=random.Random(1))
    assert len(data) <= max(size + 8, 6)
    answer = coap.decode(data)
    assert (answer.mtype, answer.mid, answer.token, answer.code) == (coap.ACK, 0x0102, b"\x01", 130)
    answer.payload.decode("utf-8")  # never cut inside a character
    non = coap.Datagram(coap.NON, 1, 5, b"\xaa")
    assert (
        coap.decode(coap.answer(non, 132, "x", budget=30, rng=random.Random(1))).mtype == coap.NON
    )


def test_a_reset_names_the_message_it_resets() -> None:
    assert coap.reset(0xABCD) == bytes.fromhex("7000abcd")
    assert coap.mid_of(bytes.fromhex("4902abcd")) == 0xABCD
    assert coap.mid_of(bytes.fromhex("5902abcd")) is None  # NON: nothing to reset


@given(st.binary(max_size=300))
@settings(max_examples=3000, deadline=None, derandomize=True)
def test_any_bytes_decode_or_raise_format_error_and_valid_ones_agree_with_aiocoap(
    data: bytes,
) -> None:
    try:
        message = coap.decode(data)
    except coap.FormatError:
        return
    assert coap.encode(message) == data  # each field has exactly one encoding
    verdict = coap.check_request(message)  # total: never raises
    if verdict.refusal is None and not verdict.ignored:
        # What passes the gate untouched, the stack must parse the same way.
        theirs = Message.decode(data)
        assert (theirs.mid, theirs.token, theirs.payload) == (
            message.mid,
            message.token,
            message.payload,
        )
        assert [o.number for o in theirs.opt.option_list()] == [o.number for o in message.options]


@given(st.binary(min_size=1, max_size=60), st.integers(0, 16), st.integers(0, 255))
@settings(
    max_examples=3000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
def test_whatever_the_gate_passes_the_coap_stack_parses(tail: bytes, at: int, byte: int) -> None:
    data = bytearray(POST_READINGS + tail)
    data[at % len(data)] = byte
    gate = Gate(peer_rate=1e9, peer_burst=1e9, total_rate=1e9, total_burst=1e9)
    passed, answer = gate.screen(bytes(data), "127.0.0.1")
    if passed is not None:
        Message.decode(passed)  # raises nothing: the stack never sees what it cannot parse
    if answer is not None:
        assert len(answer) <= max(3 * len(data), 24)
        coap.decode(answer)
