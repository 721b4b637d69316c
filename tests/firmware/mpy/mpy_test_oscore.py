# ruff: noqa: PT017 - MicroPython has no pytest
"""oscore.py against the test vectors of RFC 8613 Appendix C (key derivation C.1-C.3,
protected requests C.4-C.6, protected responses C.7-C.8) and hostile options; runs on
CPython and MicroPython (whose cryptolib the VM engine provides).
tests/firmware/test_oscore.py adds aiocoap's OSCORE as the other side."""

import binascii

import coap
import oscore
import oscorekeys
from errors import OscoreError


def _h(s: str) -> bytes:
    return binascii.unhexlify(s)


SECRET = _h("0102030405060708090a0b0c0d0e0f10")
SALT = _h("9e7ca92223786340")
ID_CONTEXT = _h("37cbf3210017a2d3")


class _File:
    def __init__(self, files: dict[str, str], path: str) -> None:
        self._files = files
        self._path = path

    def write(self, text: str) -> None:
        self._files[self._path] = text

    def read(self) -> str:
        return self._files[self._path]

    def close(self) -> None:
        pass


class MemoryFlash:
    """A flash in memory, for the sequence numbers a test vector names: what a context
    reserves lands in ``files``."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}

    def open(self, path: str, mode: str) -> _File:
        if mode == "r" and path not in self.files:
            raise OSError(2, "ENOENT")
        return _File(self.files, path)

    def rename(self, old: str, new: str) -> None:
        self.files[new] = self.files.pop(old)


def _check_derivation(
    secret: bytes,
    salt: bytes,
    sid: bytes,
    rid: bytes,
    ctx: bytes | None,
    sender_key: str,
    recipient_key: str,
    common_iv: str,
) -> None:
    keys = oscorekeys.derive(secret, salt, sid, rid, ctx)
    assert keys == (_h(sender_key), _h(recipient_key), _h(common_iv)), keys


def test_c1_key_derivation_with_master_salt() -> None:
    _check_derivation(
        SECRET,
        SALT,
        b"",
        b"\x01",
        None,
        "f0910ed7295e6ad4b54fc793154302ff",
        "ffb14e093c94c9cac9471648b4f98710",
        "4622d4dd6d944168eefb54987c",
    )
    _check_derivation(
        SECRET,
        SALT,
        b"\x01",
        b"",
        None,
        "ffb14e093c94c9cac9471648b4f98710",
        "f0910ed7295e6ad4b54fc793154302ff",
        "4622d4dd6d944168eefb54987c",
    )
    iv = _h("4622d4dd6d944168eefb54987c")
    assert oscore.nonce(iv, b"", b"\x00") == _h("4622d4dd6d944168eefb54987c")
    assert oscore.nonce(iv, b"\x01", b"\x00") == _h("4722d4dd6d944169eefb54987c")


def test_c1_info_encoding() -> None:
    assert oscorekeys._info(b"", None, "Key", 16) == _h("8540f60a634b657910")
    assert oscorekeys._info(b"\x01", None, "Key", 16) == _h("854101f60a634b657910")
    assert oscorekeys._info(b"", None, "IV", 13) == _h("8540f60a6249560d")


def test_c2_key_derivation_without_master_salt() -> None:
    _check_derivation(
        SECRET,
        b"",
        b"\x00",
        b"\x01",
        None,
        "321b26943253c7ffb6003b0b64d74041",
        "e57b5635815177cd679ab4bcec9d7dda",
        "be35ae297d2dace910c52e99f9",
    )
    iv = _h("be35ae297d2dace910c52e99f9")
    assert oscore.nonce(iv, b"\x00", b"\x00") == _h("bf35ae297d2dace910c52e99f9")
    assert oscore.nonce(iv, b"\x01", b"\x00") == _h("bf35ae297d2dace810c52e99f9")


def test_c3_key_derivation_with_id_context() -> None:
    _check_derivation(
        SECRET,
        SALT,
        b"",
        b"\x01",
        ID_CONTEXT,
        "af2a1300a5e95788b356336eeecd2b92",
        "e39a0c7c77b43f03b4b39ab9a268699f",
        "2ca58fb85ff1b81c0b7181b85e",
    )


def _protected_request(ctx: oscore.Context, unprotected: bytes) -> tuple[bytes, bytes]:
    """The OSCORE message for an unprotected request, keeping its token and message ID. Its
    Uri-Host (Class U, which a board never sends) stays outer, beside what ``protect`` made."""
    msg = coap.decode(unprotected)
    outer = [o for o in msg.options if o[0] == coap.URI_HOST]
    inner = [o for o in msg.options if o[0] != coap.URI_HOST]
    code, opts, body, piv = ctx.protect(msg.code, inner, msg.payload)
    return coap.encode(msg.mtype, code, msg.mid, msg.token, outer + opts, body), piv


def test_c4_protected_request() -> None:
    ctx = oscorekeys.context(SECRET, SALT, b"", b"\x01", MemoryFlash(), 20)
    out, piv = _protected_request(ctx, _h("44015d1f00003974396c6f63616c686f737483747631"))
    assert piv == b"\x14"
    assert out == _h("44025d1f00003974396c6f63616c686f7374620914ff612f1092f1776f1c1668b3825e"), (
        binascii.hexlify(out)
    )


def test_c5_protected_request() -> None:
    ctx = oscorekeys.context(SECRET, b"", b"\x00", b"\x01", MemoryFlash(), 20)
    out, _ = _protected_request(ctx, _h("440171c30000b932396c6f63616c686f737483747631"))
    assert out == _h("440271c30000b932396c6f63616c686f737463091400ff4ed339a5a379b0b8bc731fffb0"), (
        binascii.hexlify(out)
    )


def test_c6_protected_request_with_kid_context() -> None:
    ctx = oscorekeys.context(SECRET, SALT, b"", b"\x01", MemoryFlash(), 20, ID_CONTEXT)
    out, _ = _protected_request(ctx, _h("44012f8eef9bbf7a396c6f63616c686f737483747631"))
    assert out == _h(
        "44022f8eef9bbf7a396c6f63616c686f73746b19140837cbf3210017a2d3ff72cd7273fd331ac45cffbe55c3"
    ), binascii.hexlify(out)


def test_c7_response_without_partial_iv() -> None:
    ctx = oscorekeys.context(SECRET, SALT, b"", b"\x01", MemoryFlash(), 21)
    response = coap.decode(_h("64445d1f0000397490ffdbaad1e9a7e7b2a813d3c31524378303cdafae119106"))
    inner = ctx.unprotect(response, b"\x14")
    assert inner.code == coap.CONTENT
    assert inner.payload == b"Hello World!"
    assert inner.options == []
    assert (inner.mtype, inner.mid, inner.token) == (coap.ACK, 0x5D1F, _h("00003974"))


def test_c8_response_with_partial_iv() -> None:
    ctx = oscorekeys.context(SECRET, SALT, b"", b"\x01", MemoryFlash(), 21)
    response = coap.decode(
        _h("64445d1f00003974920100ff4d4c13669384b67354b2b6175ff4b8658c666a6cf88e")
    )
    inner = ctx.unprotect(response, b"\x14")
    assert inner.code == coap.CONTENT
    assert inner.payload == b"Hello World!"


def test_response_refused_when_tampered_or_bound_to_another_request() -> None:
    ctx = oscorekeys.context(SECRET, SALT, b"", b"\x01", MemoryFlash(), 21)
    good = _h("64445d1f0000397490ffdbaad1e9a7e7b2a813d3c31524378303cdafae119106")
    tampered = bytearray(good)
    tampered[-1] ^= 1
    for data, piv in ((bytes(tampered), b"\x14"), (good, b"\x15")):
        try:
            ctx.unprotect(coap.decode(data), piv)
        except OscoreError:
            continue
        raise AssertionError("accepted a response that does not verify")
    plain = coap.decode(_h("64815d1f00003974"))  # 4.01, no OSCORE option
    try:
        ctx.unprotect(plain, b"\x14")
    except OscoreError as e:
        assert "not protected" in str(e)
    else:
        raise AssertionError("accepted an unprotected response")


def test_option_of_each_request_and_hostile_options_in_responses() -> None:
    flash = MemoryFlash()
    ctx = oscorekeys.context(SECRET, SALT, b"\x00", b"", flash, 0)
    for seq, option in ((0, "090000"), (1, "090100"), (2, "090200")):
        _, opts, _, piv = ctx.protect(coap.GET, [(coap.URI_PATH, b"x")])
        assert opts == [(coap.OSCORE, _h(option))], (seq, opts)
        assert piv == _h(option)[1:-1]  # 0 as one byte, no leading zeros
    assert flash.files == {oscore.SEQ_PATH: str(oscore.SEQ_STEP)}  # reserved before used
    ctx.next = 0x10000
    _, opts, _, piv = ctx.protect(coap.GET, [])
    assert (piv, opts[0][1]) == (_h("010000"), _h("0b01000000"))
    good = _h("64445d1f0000397490ffdbaad1e9a7e7b2a813d3c31524378303cdafae119106")
    # reserved flags, a Partial IV of 6 bytes or longer than the option, a kid context with
    # no room for it (its Partial IV then makes a nonce the response does not verify under)
    for bad in ("20", "06", "0314", "1114"):
        response = coap.decode(good)
        response.options = [(coap.OSCORE, _h(bad))]
        try:
            ctx.unprotect(response, b"\x14")
        except OscoreError:
            continue
        raise AssertionError("accepted the option " + bad)


def test_ccm_round_trip_and_tampering() -> None:
    key = bytes(range(16))
    n = bytes(13)
    for size in (0, 1, 15, 16, 17, 100):
        data = bytes(range(size))
        sealed = oscore.ccm(key, n, b"aad", data)
        assert len(sealed) == size + 8
        assert oscore.ccm(key, n, b"aad", sealed, True) == data
        for bad in (sealed[:-1] + bytes((sealed[-1] ^ 1,)), sealed[:7]):
            try:
                oscore.ccm(key, n, b"aad", bad, True)
            except OscoreError:
                continue
            raise AssertionError("opened what was not sealed so")


_OLD_KEY = '{"sid": "0b01", "rid": "", "secret": "' + "11" * 32 + '", "salt": ""}'
_NEW_KEY = '{"sid": "0b01", "rid": "", "secret": "' + "22" * 32 + '", "salt": "5a17"}'


def test_key_handed_over_is_checked_written_and_used_from_the_stored_sequence() -> None:
    flash = MemoryFlash()
    flash.files[oscorekeys.PATH] = _OLD_KEY
    flash.files[oscore.SEQ_PATH] = "64"  # numbers below it may have gone out under the old key
    for bad in ("{", '{"sid": "0b01", "rid": ""}', _NEW_KEY.replace("22" * 32, "22" * 8)):
        try:
            oscorekeys.install(flash, bad)
        except OscoreError:
            continue
        raise AssertionError("installed unusable key material: " + bad)
    assert flash.files == {oscorekeys.PATH: _OLD_KEY, oscore.SEQ_PATH: "64"}  # nothing written
    ctx = oscorekeys.install(flash, _NEW_KEY)
    assert flash.files[oscorekeys.PATH] == _NEW_KEY  # renamed into place, whole
    assert oscorekeys.PATH + ".new" not in flash.files
    expected = oscorekeys.derive(_h("22" * 32), _h("5a17"), _h("0b01"), b"")
    assert ctx._keys == expected
    _, _, _, piv = ctx.protect(coap.POST, [])
    assert piv == b"\x40"  # 64: on from the stored limit, never back to 0
    assert flash.files[oscore.SEQ_PATH] == str(64 + oscore.SEQ_STEP)
