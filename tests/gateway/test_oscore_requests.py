"""The benchmarks' cheap OSCORE (tests/oscore_requests.py) is aiocoap's OSCORE, byte for byte:
its requests are what aiocoap's client protects and what aiocoap's server side opens, and it
reads the inner code of aiocoap's protected answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiocoap import BAD_REQUEST, CHANGED, CON, POST, Message
from aiocoap.oscore import FilesystemSecurityContext

from gateway.codec import coap
from gateway.oscore.keys import KeyMaterial
from tests.oscore_requests import (
    UNVERIFIABLE,
    BoardSender,
    aiocoap_context,
    readings_options,
)

MATERIAL = KeyMaterial(sid=b"\x0b\x01", secret=bytes(range(32)), salt=b"salty")
TOKEN = b"\x01\x02\x03\x04"


def server_context(directory: Path, material: KeyMaterial) -> FilesystemSecurityContext:
    """The gateway's side of ``material``, as aiocoap keeps it."""
    directory.mkdir()
    settings = {
        "sender-id_hex": material.rid.hex(),
        "recipient-id_hex": material.sid.hex(),
        "secret_hex": material.secret.hex(),
        "salt_hex": material.salt.hex(),
    }
    (directory / "settings.json").write_text(json.dumps(settings))
    return FilesystemSecurityContext(str(directory))


@pytest.mark.parametrize("seq", [0, 1, 255, 256, 70_000, 2**39])
def test_a_protected_request_is_what_aiocoap_makes(seq: int) -> None:
    payload = b"\x81\xa1\x00\x61x"
    ours = BoardSender(MATERIAL, sequence_number=seq).protect(POST, readings_options(), payload)
    reference = aiocoap_context(MATERIAL, seq)
    message = Message(code=POST, uri_path=("readings",), content_format=112, payload=payload)
    theirs, _ = reference.protect(message)
    theirs.mtype, theirs.mid, theirs.token = CON, 0x1234, TOKEN
    assert ours.with_ids(0x1234, TOKEN) == theirs.encode()
    assert ours.sequence_number == seq


def test_aiocoap_opens_the_request_and_its_answers_are_read(tmp_path: Path) -> None:
    sender = BoardSender(MATERIAL)
    server = server_context(tmp_path / "gw", MATERIAL)
    try:
        answers = {}
        for code in (CHANGED, BAD_REQUEST):
            request = sender.protect(POST, readings_options(), b"\x80")
            received = Message.decode(request.with_ids(7, TOKEN))
            inner, request_id = server.unprotect(received)
            assert inner.opt.uri_path == ("readings",)
            assert (inner.opt.content_format, inner.payload) == (112, b"\x80")
            protected, _ = server.protect(Message(code=code), request_id)
            protected.mtype, protected.mid, protected.token = 2, 7, TOKEN
            answers[code] = (request, protected.encode())
    finally:
        server._destroy()
    request, answer = answers[CHANGED]
    assert sender.answer_code(request, answer) == 0x44
    request, answer = answers[BAD_REQUEST]
    assert sender.answer_code(request, answer) == 0x80
    assert sender.answer_code(answers[CHANGED][0], answer) == UNVERIFIABLE  # not its answer
    refusal = coap.encode(coap.Datagram(coap.ACK, 0x81, 7, TOKEN))
    assert sender.answer_code(request, refusal) == 0x81
