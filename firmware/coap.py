"""CoAP messages (RFC 7252 §3) to and from bytes; no sockets, no clocks.

Usage::

    import coap
    opts = coap.uri_options("/readings", {"s": 5})
    opts.append((coap.CONTENT_FORMAT, coap.uint_option(coap.SENML_CBOR)))
    data = coap.encode(coap.CON, coap.POST, 0x1234, b"\\x01", opts, payload)
    msg = coap.decode(reply)
    if msg.mtype == coap.ACK and msg.code == coap.CHANGED: ...

Options are ``(number, bytes)`` pairs; ``decode`` keeps them in wire order. Every malformed
datagram raises ``CoapFormatError``.
"""

from errors import CoapFormatError

# What the board's firmware uses of CoAP's vocabulary: each name here is a module global
# on the board's heap, so none that it does not use.

# Message types
CON = 0
NON = 1
ACK = 2
RST = 3

# Codes (class << 5 | detail)
EMPTY = 0
GET = 1
POST = 2
PUT = 3
DELETE = 4
CREATED = 65
CHANGED = 68
CONTENT = 69
UNAUTHORIZED = 129
BAD_OPTION = 130
NOT_FOUND = 132
PRECONDITION_FAILED = 140
SERVICE_UNAVAILABLE = 163

# Option numbers
IF_MATCH = 1
URI_HOST = 3
ETAG = 4
OSCORE = 9  # RFC 8613
LOCATION_PATH = 8
URI_PATH = 11
CONTENT_FORMAT = 12
MAX_AGE = 14
URI_QUERY = 15
BLOCK2 = 23
BLOCK1 = 27
SIZE2 = 28
PROXY_URI = 35
SIZE1 = 60
ECHO = 252  # RFC 9175

# Content formats
CBOR = 60
SENML_CBOR = 112

_PAYLOAD_MARKER = 0xFF
_MAX_OPTION_LEN = 65535 + 269


def code_str(code):
    """The dotted form of a code: 68 -> "2.04"."""
    return "%d.%02d" % (code >> 5, code & 0x1F)


class Message:
    """A decoded CoAP message."""

    def __init__(self, mtype, code, mid, token=b"", options=None, payload=b""):
        self.mtype = mtype
        self.code = code
        self.mid = mid
        self.token = token
        self.options = options if options is not None else []
        self.payload = payload

    def option(self, number):
        """The first value of option ``number``, or None."""
        for num, value in self.options:
            if num == number:
                return value
        return None

    def options_all(self, number):
        """Every value of option ``number``, in order."""
        return [value for num, value in self.options if num == number]

    def encode(self):
        return encode(self.mtype, self.code, self.mid, self.token, self.options, self.payload)

    def __repr__(self):
        return "<CoAP %s %s mid=%d token=%s %d options %d bytes>" % (
            ("CON", "NON", "ACK", "RST")[self.mtype],
            code_str(self.code),
            self.mid,
            self.token.hex(),
            len(self.options),
            len(self.payload),
        )


def _nibble(value):
    """(nibble, extension bytes) for an option delta or length."""
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes((value - 13,))
    return 14, (value - 269).to_bytes(2, "big")


def _as_bytes(value):
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError("option value must be bytes or str, not " + type(value).__name__)


def encode(mtype, code, mid, token=b"", options=(), payload=b""):
    """The datagram for a message. Options may come in any order; equal numbers keep theirs."""
    if not 0 <= mtype <= 3:
        raise ValueError("message type out of range")
    if not 0 <= code <= 255:
        raise ValueError("code out of range")
    if not 0 <= mid <= 0xFFFF:
        raise ValueError("message ID out of range")
    if len(token) > 8:
        raise ValueError("token longer than 8 bytes")
    out = bytearray((0x40 | mtype << 4 | len(token), code, mid >> 8, mid & 0xFF))
    out.extend(token)
    # MicroPython's sort is not stable: the index keeps repeated options in their order.
    ordered = [(opt[0], i, opt[1]) for i, opt in enumerate(options)]
    ordered.sort()
    prev = 0
    for number, _, value in ordered:
        value = _as_bytes(value)
        if number < 0 or number > 0xFFFF:
            raise ValueError("option number out of range")
        if len(value) > _MAX_OPTION_LEN:
            raise ValueError("option value too long")
        dn, dext = _nibble(number - prev)
        ln, lext = _nibble(len(value))
        out.append(dn << 4 | ln)
        out.extend(dext)
        out.extend(lext)
        out.extend(value)
        prev = number
    if payload:
        out.append(_PAYLOAD_MARKER)
        out.extend(payload)
    return bytes(out)


def _extended(data, pos, nibble, what):
    """(value, new position) for a delta or length nibble and its extension bytes."""
    if nibble < 13:
        return nibble, pos
    if nibble == 13:
        if pos + 1 > len(data):
            raise CoapFormatError("truncated option " + what)
        return data[pos] + 13, pos + 1
    if nibble == 14:
        if pos + 2 > len(data):
            raise CoapFormatError("truncated option " + what)
        return (data[pos] << 8 | data[pos + 1]) + 269, pos + 2
    raise CoapFormatError("reserved option %s nibble 15" % what)


def decode(data):
    """The Message in a datagram."""
    if len(data) < 4:
        raise CoapFormatError("message shorter than the 4-byte header")
    first = data[0]
    if first >> 6 != 1:
        raise CoapFormatError("unknown CoAP version %d" % (first >> 6))
    mtype = (first >> 4) & 3
    tkl = first & 0x0F
    if tkl > 8:
        raise CoapFormatError("token length %d is reserved" % tkl)
    code = data[1]
    mid = data[2] << 8 | data[3]
    if code == EMPTY and len(data) != 4:
        raise CoapFormatError("empty message with bytes after the header")
    pos = 4 + tkl
    if pos > len(data):
        raise CoapFormatError("truncated token")
    token = bytes(data[4:pos])
    options = []
    number = 0
    payload = b""
    while pos < len(data):
        byte = data[pos]
        pos += 1
        if byte == _PAYLOAD_MARKER:
            if pos == len(data):
                raise CoapFormatError("payload marker followed by no payload")
            payload = bytes(data[pos:])
            break
        delta, pos = _extended(data, pos, byte >> 4, "delta")
        length, pos = _extended(data, pos, byte & 0x0F, "length")
        if pos + length > len(data):
            raise CoapFormatError("truncated option value")
        number += delta
        options.append((number, bytes(data[pos : pos + length])))
        pos += length
    return Message(mtype, code, mid, token, options, payload)


def uint_option(n):
    """An unsigned option value in the fewest bytes (0 is the empty string)."""
    if n < 0:
        raise ValueError("uint option must not be negative")
    size = 0
    while n >> (8 * size):
        size += 1
    return n.to_bytes(size, "big")


def decode_uint(b):
    n = 0
    for byte in b:
        n = n << 8 | byte
    return n


def uri_options(path, query=None):
    """Uri-Path options for ``path`` ("/readings", "/fw/a") and Uri-Query options for
    ``query``: a dict (written in sorted key order, so every interpreter sends the same bytes)
    or a list of "k=v" strings (kept in order)."""
    opts = []
    for segment in path.split("/"):
        if segment:
            opts.append((URI_PATH, segment.encode("utf-8")))
    if query:
        if isinstance(query, dict):
            items = ["%s=%s" % (k, query[k]) for k in sorted(query)]
        else:
            items = query
        for item in items:
            opts.append((URI_QUERY, item.encode("utf-8")))
    return opts
