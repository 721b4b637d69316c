"""Minimal CBOR (RFC 8949) for the board: what SenML, health reports and manifests need.

Usage::

    import cbor
    data = cbor.dumps({"n": "temp", "v": 21.5})
    obj = cbor.loads(data)

``dumps`` takes int (any size; beyond 64 bits as a bignum tag), bytes, str, list/tuple,
dict, bool, None and float (float32 when that is exact, else float64). ``loads`` is strict:
truncated input, trailing bytes, reserved encodings, unknown simple values, duplicate map
keys and nesting deeper than ``MAX_DEPTH`` raise ``CborError``. Indefinite-length strings,
arrays and maps are read (they cost a few lines), never written. Tags 2 and 3 (bignums)
decode to int; other tags decode to ``Tag(tag, value)``.

Every length is checked against the bytes actually left before anything is allocated, so a
hostile header cannot make the board reserve memory it does not have.
"""

import struct

from errors import CborError

try:
    from micropython import const
except ImportError:

    def const(x):  # type: ignore[misc]  # CPython: const is the identity
        return x


MAX_DEPTH = const(16)

_UINT = const(0)
_NINT = const(1)
_BYTES = const(2)
_TEXT = const(3)
_ARRAY = const(4)
_MAP = const(5)
_TAG = const(6)
_SIMPLE = const(7)

_BREAK = const(0xFF)
_INDEFINITE = const(31)
_U64_MAX = const(0xFFFFFFFFFFFFFFFF)


class Tag:
    """A tagged item whose tag this decoder does not interpret."""

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Tag) and other.tag == self.tag and other.value == self.value

    def __hash__(self):
        return hash(self.tag)

    def __repr__(self):
        return "Tag(%d, %r)" % (self.tag, self.value)


# --- encoding ---------------------------------------------------------------------------


def encode_head(major, value):
    """The initial byte and argument of an item: major type 0..7, argument 0..2**64-1."""
    mt = major << 5
    if value < 24:
        return bytes((mt | value,))
    if value < 0x100:
        return bytes((mt | 24, value))
    if value < 0x10000:
        return struct.pack(">BH", mt | 25, value)
    if value < 0x100000000:
        return struct.pack(">BI", mt | 26, value)
    return struct.pack(">BQ", mt | 27, value)


def _encode_float(out, x):
    if x != x:
        out.extend(b"\xfa\x7f\xc0\x00\x00")  # NaN compares unequal to itself; float32 is exact
        return
    try:
        single = struct.pack(">f", x)
        exact = struct.unpack(">f", single)[0] == x
    except OverflowError:
        exact = False
    if exact:
        out.append(0xFA)
        out.extend(single)
    else:
        out.append(0xFB)
        out.extend(struct.pack(">d", x))


def _encode_int(out, x):
    if x >= 0:
        major = _UINT
    else:
        major = _NINT
        x = -1 - x
    if x <= _U64_MAX:
        out.extend(encode_head(major, x))
        return
    # A bignum (RFC 8949 §3.4.3): tag 2 or 3 around the big-endian magnitude.
    n = 9  # MicroPython's int has no bit_length()
    while x >> (8 * n):
        n += 1
    out.extend(encode_head(_TAG, 2 + major))
    out.extend(encode_head(_BYTES, n))
    out.extend(x.to_bytes(n, "big"))


def _encode(out, obj, depth):
    if depth > MAX_DEPTH:
        raise CborError("nesting deeper than %d" % MAX_DEPTH)
    # bool first: on CPython a bool is also an int.
    if obj is False:
        out.append(0xF4)
    elif obj is True:
        out.append(0xF5)
    elif obj is None:
        out.append(0xF6)
    elif isinstance(obj, int):
        _encode_int(out, obj)
    elif isinstance(obj, float):
        _encode_float(out, obj)
    elif isinstance(obj, str):
        b = obj.encode("utf-8")
        out.extend(encode_head(_TEXT, len(b)))
        out.extend(b)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        out.extend(encode_head(_BYTES, len(obj)))
        out.extend(obj)
    elif isinstance(obj, (list, tuple)):
        out.extend(encode_head(_ARRAY, len(obj)))
        for item in obj:
            _encode(out, item, depth + 1)
    elif isinstance(obj, dict):
        out.extend(encode_head(_MAP, len(obj)))
        for key in obj:
            _encode(out, key, depth + 1)
            _encode(out, obj[key], depth + 1)
    elif isinstance(obj, Tag):
        out.extend(encode_head(_TAG, obj.tag))
        _encode(out, obj.value, depth + 1)
    else:
        raise CborError("cannot encode " + type(obj).__name__)


def dumps(obj):
    """``obj`` as CBOR bytes. Map keys keep the dict's iteration order."""
    out = bytearray()
    _encode(out, obj, 0)
    return bytes(out)


# --- decoding ---------------------------------------------------------------------------


class _Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        end = self.pos + n
        if end > len(self.data):
            raise CborError("truncated: need %d bytes at offset %d" % (n, self.pos))
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def left(self):
        return len(self.data) - self.pos

    def head(self):
        """(major, additional info, argument); the argument is None for indefinite length."""
        ib = self.take(1)[0]
        major = ib >> 5
        info = ib & 0x1F
        if info < 24:
            return major, info, info
        if info == 24:
            return major, info, self.take(1)[0]
        if info == 25:
            return major, info, struct.unpack(">H", self.take(2))[0]
        if info == 26:
            return major, info, struct.unpack(">I", self.take(4))[0]
        if info == 27:
            return major, info, struct.unpack(">Q", self.take(8))[0]
        if info == _INDEFINITE:
            return major, info, None
        raise CborError("reserved additional information %d at offset %d" % (info, self.pos - 1))

    def at_break(self):
        if self.pos >= len(self.data):
            raise CborError("truncated: indefinite-length item without break")
        if self.data[self.pos] == _BREAK:
            self.pos += 1
            return True
        return False


def _half(bits):
    exp = (bits >> 10) & 0x1F
    frac = bits & 0x3FF
    if exp == 0:
        val = frac * 2.0**-24
    elif exp == 31:
        val = float("inf") if frac == 0 else float("nan")
    else:
        val = (1024 + frac) * 2.0 ** (exp - 25)
    return -val if bits & 0x8000 else val


def _string(r, major, arg):
    if arg is None:
        chunks = []
        while not r.at_break():
            m, _, n = r.head()
            if m != major or n is None:
                raise CborError("bad chunk in indefinite-length string")
            chunks.append(r.take(n))
        raw = b"".join(chunks)
    else:
        raw = r.take(arg)
    if major == _BYTES:
        return bytes(raw)
    try:
        return str(raw, "utf-8")
    except (UnicodeError, ValueError):
        raise CborError("text string is not valid UTF-8") from None


def _decode(r, depth):
    if depth > MAX_DEPTH:
        raise CborError("nesting deeper than %d" % MAX_DEPTH)
    major, info, arg = r.head()
    if major in (_UINT, _NINT):
        if arg is None:
            raise CborError("indefinite length on an integer")
        return arg if major == _UINT else -1 - arg
    if major in (_BYTES, _TEXT):
        return _string(r, major, arg)
    if major == _ARRAY:
        if arg is None:
            items = []
            while not r.at_break():
                items.append(_decode(r, depth + 1))
            return items
        if arg > r.left():  # every item takes at least one byte
            raise CborError("array of %d items longer than the input" % arg)
        return [_decode(r, depth + 1) for _ in range(arg)]
    if major == _MAP:
        if arg is not None and arg * 2 > r.left():
            raise CborError("map of %d pairs longer than the input" % arg)
        result = {}
        n = 0
        while (arg is None and not r.at_break()) or (arg is not None and n < arg):
            key = _decode(r, depth + 1)
            value = _decode(r, depth + 1)
            try:
                if key in result:
                    raise CborError("duplicate map key %r" % (key,))
                result[key] = value
            except TypeError:
                raise CborError("map key of type %s is not usable" % type(key).__name__) from None
            n += 1
        return result
    if major == _TAG:
        if arg is None:
            raise CborError("indefinite length on a tag")
        value = _decode(r, depth + 1)
        if arg == 2 or arg == 3:
            if not isinstance(value, bytes):
                raise CborError("bignum tag around a non-byte-string")
            n = int.from_bytes(value, "big")
            return n if arg == 2 else -1 - n
        return Tag(arg, value)
    # major 7: simple values and floats
    if info == 20:
        return False
    if info == 21:
        return True
    if info == 22:
        return None
    if info == 25:
        return _half(arg)
    if info == 26:
        return struct.unpack(">f", struct.pack(">I", arg))[0]
    if info == 27:
        return struct.unpack(">d", struct.pack(">Q", arg))[0]
    if arg is None:
        raise CborError("unexpected break")
    if info == 24 and arg < 32:
        raise CborError("simple value %d in two-byte form" % arg)
    raise CborError("unsupported simple value %d" % arg)


def loads(data):
    """The single CBOR item that is exactly ``data``."""
    r = _Reader(data)
    obj = _decode(r, 0)
    if r.left():
        raise CborError("%d trailing bytes after the item" % r.left())
    return obj
