"""CoAP datagrams (RFC 7252 §3) as plain objects, and the checks a server owes each request.

Pure functions between bytes and :class:`Datagram`: no sockets, clocks or aiocoap. The gateway
runs :func:`check_request` on every datagram before its CoAP stack sees it
(:mod:`gateway.intake.gate`), so that what RFC 7252 requires of a server is done in one
place that is tested against literal bytes:

* a message format error (§3: token length 9..15, option nibble 15, a payload marker with no
  payload, an option running past the end, a reserved code class; §4: a type that cannot
  carry its code, such as a non-empty RST, an empty NON, an ACK carrying a request) is
  answered with RST if confirmable, else ignored (§4.2, §4.3); a datagram too short for a
  header, or of another version, is ignored;
* an unrecognised *critical* option in a request (odd number, §5.4.1), a critical option
  whose length is outside its range (§5.4.3), a non-repeatable critical option given twice
  (§5.4.5), or a string option that is not UTF-8 (§3.2) gets 4.02 Bad Option;
* Proxy-Uri or Proxy-Scheme gets 5.05 Proxying Not Supported (§5.7.2): this is no proxy;
* If-Match with an ETag, or If-None-Match, gets 4.12 Precondition Failed (§5.10.8): these
  resources have no ETags, and they exist;
* an unrecognised or malformed *elective* option is ignored (§5.4.1): :func:`without`
  removes it before the stack sees the request.

An answer is built by :func:`answer` (piggybacked ACK for CON, NON for NON, §5.2) and keeps
its diagnostic payload within an amplification budget set by the caller.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Final, NamedTuple

VERSION: Final = 1
CON: Final = 0
NON: Final = 1
ACK: Final = 2
RST: Final = 3
PAYLOAD_MARKER: Final = 0xFF

# Response codes (class << 5 | detail).
BAD_OPTION: Final = 4 << 5 | 2
PRECONDITION_FAILED: Final = 4 << 5 | 12
PROXYING_NOT_SUPPORTED: Final = 5 << 5 | 5

IF_MATCH: Final = 1
URI_HOST: Final = 3
IF_NONE_MATCH: Final = 5
URI_PATH: Final = 11
URI_QUERY: Final = 15
PROXY_URI: Final = 35
PROXY_SCHEME: Final = 39


class OptionRule(NamedTuple):
    """What RFC 7252 (and the RFCs that add options) says an option may be."""

    name: str
    repeatable: bool
    min_length: int
    max_length: int
    is_string: bool = False


#: The options this gateway understands, by number. Another critical one is refused.
OPTIONS: Final[dict[int, OptionRule]] = {
    1: OptionRule("If-Match", True, 0, 8),
    3: OptionRule("Uri-Host", False, 1, 255, True),
    4: OptionRule("ETag", True, 1, 8),
    5: OptionRule("If-None-Match", False, 0, 0),
    6: OptionRule("Observe", False, 0, 3),
    7: OptionRule("Uri-Port", False, 0, 2),
    8: OptionRule("Location-Path", True, 0, 255, True),
    9: OptionRule("OSCORE", False, 0, 255),  # RFC 8613 (its value is checked by aiocoap)
    11: OptionRule("Uri-Path", True, 0, 255, True),
    12: OptionRule("Content-Format", False, 0, 2),
    14: OptionRule("Max-Age", False, 0, 4),
    15: OptionRule("Uri-Query", True, 0, 255, True),
    17: OptionRule("Accept", False, 0, 2),
    20: OptionRule("Location-Query", True, 0, 255, True),
    23: OptionRule("Block2", False, 0, 3),  # RFC 7959
    27: OptionRule("Block1", False, 0, 3),
    28: OptionRule("Size2", False, 0, 4),
    35: OptionRule("Proxy-Uri", False, 1, 1034, True),
    39: OptionRule("Proxy-Scheme", False, 1, 255, True),
    60: OptionRule("Size1", False, 0, 4),
    252: OptionRule("Echo", False, 1, 40),  # RFC 9175
    258: OptionRule("No-Response", False, 0, 1),  # RFC 7967
    292: OptionRule("Request-Tag", True, 0, 8),  # RFC 9175
}


class FormatError(ValueError):
    """The bytes are not a well-formed CoAP message (RFC 7252 §3)."""


@dataclass(frozen=True, slots=True)
class Option:
    number: int
    value: bytes


@dataclass(frozen=True, slots=True)
class Datagram:
    """One CoAP message as it came: header fields, token, options in order, payload."""

    mtype: int
    code: int
    mid: int
    token: bytes
    options: tuple[Option, ...] = ()
    payload: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.code >> 5 == 0 and self.code != 0

    @property
    def is_empty(self) -> bool:
        return self.code == 0

    def values(self, number: int) -> list[bytes]:
        """The values of every option ``number``, in order."""
        return [o.value for o in self.options if o.number == number]

    @property
    def path(self) -> tuple[str, ...]:
        """The Uri-Path segments (after :func:`check_request` has found them UTF-8)."""
        return tuple(v.decode("utf-8", "replace") for v in self.values(URI_PATH))


def _extended(nibble: int, data: bytes, at: int) -> tuple[int, int]:
    if nibble < 13:
        return nibble, at
    if nibble == 13:
        if at + 1 > len(data):
            raise FormatError("option header runs past the end")
        return data[at] + 13, at + 1
    if nibble == 14:
        if at + 2 > len(data):
            raise FormatError("option header runs past the end")
        return int.from_bytes(data[at : at + 2], "big") + 269, at + 2
    raise FormatError("option nibble 15 is reserved")


def decode(data: bytes) -> Datagram:
    """The message in ``data``; :class:`FormatError` for anything RFC 7252 §3 does not allow."""
    if len(data) < 4:
        raise FormatError("shorter than a CoAP header")
    first = data[0]
    if first >> 6 != VERSION:
        raise FormatError(f"version {first >> 6}")
    mtype, tkl = (first >> 4) & 0x3, first & 0xF
    code, mid = data[1], int.from_bytes(data[2:4], "big")
    if tkl > 8:
        raise FormatError(f"token length {tkl}")
    if len(data) < 4 + tkl:
        raise FormatError("token runs past the end")
    token = bytes(data[4 : 4 + tkl])
    at, number = 4 + tkl, 0
    options: list[Option] = []
    payload = b""
    while at < len(data):
        if data[at] == PAYLOAD_MARKER:
            payload = bytes(data[at + 1 :])
            if not payload:
                raise FormatError("payload marker with no payload")
            break
        delta, length = data[at] >> 4, data[at] & 0xF
        delta, at = _extended(delta, data, at + 1)
        length, at = _extended(length, data, at)
        if at + length > len(data):
            raise FormatError("option value runs past the end")
        number += delta
        options.append(Option(number, bytes(data[at : at + length])))
        at += length
    if code == 0 and (tkl or options or payload):
        raise FormatError("an empty message carries only a header")
    klass = code >> 5
    if klass in (1, 6, 7):
        raise FormatError(f"code class {klass} is reserved")
    if mtype == RST and code != 0:
        raise FormatError("a reset is always empty")
    if mtype == NON and code == 0:
        raise FormatError("a non-confirmable message is never empty")
    if mtype == ACK and klass == 0 and code != 0:
        raise FormatError("an acknowledgement never carries a request")
    return Datagram(mtype, code, mid, token, tuple(options), payload)


def _nibble(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes([value - 13])
    return 14, (value - 269).to_bytes(2, "big")


def encode(message: Datagram) -> bytes:
    """The bytes of ``message`` (options sorted by number, as the wire needs)."""
    out = bytearray([VERSION << 6 | message.mtype << 4 | len(message.token), message.code])
    out += message.mid.to_bytes(2, "big")
    out += message.token
    number = 0
    for option in sorted(message.options, key=lambda o: o.number):
        delta, delta_ext = _nibble(option.number - number)
        length, length_ext = _nibble(len(option.value))
        out.append(delta << 4 | length)
        out += delta_ext + length_ext + option.value
        number = option.number
    if message.payload:
        out.append(PAYLOAD_MARKER)
        out += message.payload
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Refusal:
    """What the request gets instead of reaching a resource: a code and why."""

    code: int
    reason: str
    diagnostic: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """:func:`check_request`'s finding: refuse, or pass on with some options dropped."""

    refusal: Refusal | None = None
    ignored: tuple[int, ...] = field(default_factory=tuple)


def check_request(message: Datagram) -> Verdict:
    """What RFC 7252 says to do with a request's options before any resource sees it."""
    seen: set[int] = set()
    ignored: list[int] = []
    for option in message.options:
        number, rule = option.number, OPTIONS.get(option.number)
        critical = number & 1 == 1
        problem = None
        if rule is None:
            problem = f"option {number} is not understood"
        elif not rule.min_length <= len(option.value) <= rule.max_length:
            problem = f"{rule.name} of {len(option.value)} bytes"
        elif number in seen and not rule.repeatable:
            problem = f"{rule.name} given twice"
        elif rule.is_string and not _is_utf8(option.value):
            problem = f"{rule.name} is not UTF-8"
        seen.add(number)
        if problem is not None:
            if critical:
                return Verdict(Refusal(BAD_OPTION, "bad_option", problem))
            ignored.append(number)
    if PROXY_URI in seen or PROXY_SCHEME in seen:
        return Verdict(Refusal(PROXYING_NOT_SUPPORTED, "proxying", "this gateway is not a proxy"))
    if IF_NONE_MATCH in seen or any(message.values(IF_MATCH)):
        return Verdict(
            Refusal(PRECONDITION_FAILED, "precondition", "no ETag here; the resource exists")
        )
    return Verdict(None, tuple(ignored))


def strings_are_utf8(message: Datagram) -> bool:
    """Whether every string option (Uri-Path, Location-Path...) is UTF-8, as §3.2 requires."""
    for option in message.options:
        rule = OPTIONS.get(option.number)
        if rule is not None and rule.is_string and not _is_utf8(option.value):
            return False
    return True


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def without(message: Datagram, numbers: tuple[int, ...]) -> Datagram:
    """``message`` with every option numbered in ``numbers`` removed."""
    kept = tuple(o for o in message.options if o.number not in numbers)
    return Datagram(message.mtype, message.code, message.mid, message.token, kept, message.payload)


def answer(
    request: Datagram, code: int, diagnostic: str, *, budget: int, rng: random.Random
) -> bytes:
    """The response to ``request``: a piggybacked ACK for CON, a NON for NON (§5.2).

    The diagnostic payload is cut so that the whole response stays within ``budget``
    bytes (never cut inside a character), so a refusal amplifies nothing.
    """
    mtype, mid = (ACK, request.mid) if request.mtype == CON else (NON, rng.randrange(1 << 16))
    bare = Datagram(mtype, code, mid, request.token)
    room = budget - len(encode(bare)) - 1
    text = diagnostic.encode("utf-8")[: max(room, 0)].decode("utf-8", "ignore").encode()
    return encode(Datagram(mtype, code, mid, request.token, (), text))


def reset(mid: int) -> bytes:
    """An RST for message ``mid`` (§4.2: the answer to a CON we cannot process)."""
    return encode(Datagram(RST, 0, mid, b""))


def mid_of(data: bytes) -> int | None:
    """The message ID of a datagram with at least a version-1 CON header, else None."""
    if len(data) >= 4 and data[0] >> 6 == VERSION and (data[0] >> 4) & 0x3 == CON:
        return int.from_bytes(data[2:4], "big")
    return None
