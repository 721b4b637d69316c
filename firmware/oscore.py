"""OSCORE (RFC 8613): the board's requests to its gateway, encrypted and bound to the board.

The board is the client of one security context: AES-CCM-16-64-128 (COSE algorithm 10),
HKDF-SHA-256, no ID Context, its Sender ID the board's ``sid``, the gateway's ``rid``
(empty). ``oscorekeys`` reads the key material (``/oscore.json``) and derives the keys at
start; this module holds what runs for every request. Usage::

    import oscorekeys
    ctx = oscorekeys.load(board.flash)  # None without /oscore.json: plain CoAP
    code, opts, body, piv = ctx.protect(coap.POST, opts, payload)   # the outer request
    inner = ctx.unprotect(response, piv)  # the response's inner Message, or OscoreError

**Sequence numbers.** Every request takes the next Sender Sequence Number, which makes its
nonce; a nonce must never be used twice with one key. ``SenderSequence`` keeps, in
``/data/oscore_seq``, a number that no request has reached: before the first request of a
boot, and whenever the numbers reserved so far are spent, it writes the next ``SEQ_STEP``
above (a temporary file renamed over the old one, so a power cut leaves the old limit or the
new), and only then uses them. After a reset the board starts at the stored limit: the
numbers it skips are never used, and none below the limit is used again.

**Echo** (RFC 9175, RFC 8613 Appendix B.1.2). A gateway that lost its replay window answers
4.01 with an Echo option inside the protected response; ``coapclient`` sends the request
once more with that Echo inside, under a new sequence number.

The cipher is ``cryptolib``'s AES, what the ESP32 port offers (in its AES hardware): CCM
(RFC 3610) takes the CBC-MAC in one CBC call and the key stream in one ECB call. Pure
functions between bytes, but for the sequence store's flash.
"""

from binascii import hexlify

import coap
import cryptolib
from errors import OscoreError

SEQ_PATH = "/data/oscore_seq"
SEQ_STEP = 32  # sequence numbers reserved by one flash write
MAX_SEQ = (1 << 40) - 1  # RFC 8613 §7.2.1: a Partial IV is at most 5 bytes
ALG = 10  # AES-CCM-16-64-128
NONCE_BYTES = 13
_TAG = 8
_MAX_ID = NONCE_BYTES - 6  # 7 bytes
# Options the outer message keeps in clear (Class U, RFC 8613 §4.1); all others go inside.
_OUTER = (coap.URI_HOST, coap.URI_PORT, coap.PROXY_URI, 39, coap.OSCORE)


# --- AES-CCM-16-64-128 (RFC 3610: M = 8, L = 2) on cryptolib's AES ---------------------------


def _xor(a: bytes, b: bytes | bytearray | memoryview) -> bytes:
    """a XOR the first len(a) bytes of b."""
    n = len(a)
    if not n:
        return b""
    return (int.from_bytes(a, "big") ^ int.from_bytes(b[:n], "big")).to_bytes(n, "big")


def _padded(buf: bytearray, data: bytes) -> None:
    buf.extend(data)
    if len(buf) % 16:
        buf.extend(bytes(16 - len(buf) % 16))


def _mac(key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """The CBC-MAC T of CCM, all blocks in one CBC call (zero IV), its last block."""
    blocks = bytearray(b"\x59")  # Adata, M = 8: (8-2)/2 << 3, L = 2: L-1
    blocks.extend(nonce)
    blocks.extend(len(plaintext).to_bytes(2, "big"))
    _padded(blocks, len(aad).to_bytes(2, "big") + aad)
    _padded(blocks, plaintext)
    cryptolib.aes(key, 2, bytes(16)).encrypt(blocks, blocks)
    return bytes(blocks[-16 : -16 + _TAG])


def _keystream(key: bytes, nonce: bytes, n: int) -> bytearray:
    """S_0 .. S_m of CCM's counter mode for n bytes, in one ECB call."""
    count = (n + 15) // 16 + 1
    blocks = bytearray(16 * count)
    for i in range(count):
        at = 16 * i
        blocks[at] = 1  # L-1
        blocks[at + 1 : at + 14] = nonce
        blocks[at + 14] = i >> 8
        blocks[at + 15] = i & 0xFF
    cryptolib.aes(key, 1).encrypt(blocks, blocks)
    return blocks


def encrypt(key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """Ciphertext and 8-byte tag of ``plaintext`` (AES-CCM-16-64-128)."""
    stream = _keystream(key, nonce, len(plaintext))
    tag = _xor(_mac(key, nonce, aad, plaintext), stream)
    return _xor(plaintext, memoryview(stream)[16:]) + tag


def decrypt(key: bytes, nonce: bytes, aad: bytes, data: bytes) -> bytes:
    """The plaintext of ciphertext-and-tag ``data``; OscoreError if it does not verify."""
    if len(data) < _TAG:
        raise OscoreError("ciphertext shorter than its tag")
    body = data[:-_TAG]
    stream = _keystream(key, nonce, len(body))
    plaintext = _xor(body, memoryview(stream)[16:])
    tag = _xor(_mac(key, nonce, aad, plaintext), stream)
    diff = 0
    given = data[-_TAG:]
    for i in range(_TAG):
        diff |= tag[i] ^ given[i]
    if diff:
        raise OscoreError("tag does not verify")
    return plaintext


# --- the COSE object (RFC 8613 §5, §6) ----------------------------------------------------


def bstr(b: bytes) -> bytes:
    """A CBOR byte string (shorter than 256 bytes, as every OSCORE id is)."""
    n = len(b)
    return (bytes((0x40 | n,)) if n < 24 else bytes((0x58, n))) + b


def piv_bytes(seq: int) -> bytes:
    """A sequence number as a Partial IV: big-endian, no leading zeros, 0 as one byte."""
    return coap.uint_option(seq) or b"\x00"


def nonce(common_iv: bytes, id_piv: bytes, piv: bytes) -> bytes:
    """The AEAD nonce (§5.2): size of ID_PIV, ID_PIV and PIV padded, XOR the Common IV."""
    n = bytearray(NONCE_BYTES)
    n[0] = len(id_piv)
    n[8 - len(id_piv) : 8] = id_piv
    n[NONCE_BYTES - len(piv) :] = piv
    return _xor(bytes(n), common_iv)


def aad(request_kid: bytes, request_piv: bytes) -> bytes:
    """The Enc_structure (§5.4): ["Encrypt0", h'', external_aad], external_aad being
    bstr .cbor [1, [alg], request_kid, request_piv, h''] (no Class I options)."""
    external = b"\x85\x01\x81" + bytes((ALG,)) + bstr(request_kid) + bstr(request_piv) + b"\x40"
    return b"\x83\x68Encrypt0\x40" + bstr(external)


def encode_option(
    piv: bytes | None = None, kid: bytes | None = None, kid_context: bytes | None = None
) -> bytes:
    """The OSCORE option's value (§6.1); empty when it carries nothing."""
    flags = 0
    out = bytearray(1)
    if piv is not None:
        flags |= len(piv)
        out.extend(piv)
    if kid_context is not None:
        flags |= 0x10
        out.append(len(kid_context))
        out.extend(kid_context)
    if kid is not None:
        flags |= 0x08
        out.extend(kid)
    if not flags:
        return b""
    out[0] = flags
    return bytes(out)


def decode_option(value: bytes) -> tuple[bytes | None, bytes | None, bytes | None]:
    """(piv, kid, kid_context) of an OSCORE option value, None for what it leaves out."""
    if not value:
        return None, None, None
    flags = value[0]
    n = flags & 7
    if flags & 0xE0 or n > 5:
        raise OscoreError("OSCORE option with reserved flags")
    pos = 1 + n
    if pos > len(value):
        raise OscoreError("OSCORE option shorter than its Partial IV")
    piv = bytes(value[1:pos]) if n else None
    kid_context = None
    if flags & 0x10:
        if pos >= len(value) or pos + 1 + value[pos] > len(value):
            raise OscoreError("OSCORE option shorter than its kid context")
        kid_context = bytes(value[pos + 1 : pos + 1 + value[pos]])
        pos += 1 + value[pos]
    kid = bytes(value[pos:]) if flags & 0x08 else None
    if kid is None and pos != len(value):
        raise OscoreError("OSCORE option with trailing bytes")
    return piv, kid, kid_context


# --- the sender sequence number, in flash ---------------------------------------------------


class SenderSequence:
    """The Sender Sequence Number, reserved in flash ``step`` at a time (see the module)."""

    def __init__(self, flash, path: str = SEQ_PATH, step: int = SEQ_STEP) -> None:
        self._flash = flash
        self._path = path
        self._step = step
        self.next = 0
        try:
            f = flash.open(path, "r")
        except OSError:
            f = None  # never used: a fresh key
        if f is not None:
            try:
                text = f.read()
            finally:
                f.close()
            try:
                self.next = int(text)
            except ValueError:
                # Written only by rename, so this is a damaged flash: starting lower could
                # reuse a nonce, so the board sends nothing rather than guess.
                raise OscoreError("sequence store unreadable: " + path) from None
        self.limit = self.next  # nothing reserved by this boot yet

    def take(self) -> int:
        """The next sequence number, durably reserved before it is returned."""
        seq = self.next
        if seq >= self.limit:
            limit = seq + self._step
            if limit > MAX_SEQ + 1:
                raise OscoreError("sender sequence numbers spent: the key must be renewed")
            tmp = self._path + ".tmp"
            f = self._flash.open(tmp, "w")
            try:
                f.write(str(limit))
            finally:
                f.close()
            self._flash.rename(tmp, self._path)
            self.limit = limit
        self.next = seq + 1
        return seq


# --- the context ----------------------------------------------------------------------------


class Context:
    """The board's security context: it protects requests and verifies their responses.

    ``keys``: (Sender Key, Recipient Key, Common IV), from ``oscorekeys.derive``;
    ``sequence`` is anything with ``take()`` (a ``SenderSequence`` on a board).
    ``id_context`` is derived in and sent as 'kid context' when given (the board uses none).
    """

    def __init__(
        self, keys: tuple, sid: bytes, rid: bytes, sequence, id_context: bytes | None = None
    ) -> None:
        if len(sid) > _MAX_ID or len(rid) > _MAX_ID:
            raise OscoreError("Sender and Recipient IDs are at most 7 bytes")
        if sid == rid:
            raise OscoreError("Sender and Recipient IDs must differ")
        self.sid = sid
        self.rid = rid
        self.id_context = id_context
        self._sender_key, self._recipient_key, self._common_iv = keys
        self.sequence = sequence

    def __repr__(self) -> str:
        return "<OSCORE sid=%s rid=%s>" % (hexlify(self.sid).decode(), hexlify(self.rid).decode())

    def protect(self, code: int, options: list, payload: bytes = b"") -> tuple:
        """The outer request of one request: (POST, outer options, ciphertext, its Partial
        IV, which binds the response). Class U options stay outer, the rest go inside."""
        seq = self.sequence.take()
        piv = piv_bytes(seq)
        inner = [o for o in options if o[0] not in _OUTER]
        outer = [o for o in options if o[0] in _OUTER and o[0] != coap.OSCORE]
        encoded = coap.encode(0, code, 0, b"", inner, payload)
        plaintext = encoded[1:2] + encoded[4:]  # the code, the options, the payload
        del encoded
        body = encrypt(
            self._sender_key,
            nonce(self._common_iv, self.sid, piv),
            aad(self.sid, piv),
            plaintext,
        )
        outer.append((coap.OSCORE, encode_option(piv, self.sid, self.id_context)))
        return coap.POST, outer, body, piv

    def unprotect(self, response: coap.Message, request_piv: bytes) -> coap.Message:
        """The inner Message of a protected response to the request of ``request_piv``: its
        code, options and payload, with the outer type, message ID and token. OscoreError
        if it is not protected or does not verify."""
        value = response.option(coap.OSCORE)
        if value is None:
            raise OscoreError("response not protected (%s)" % coap.code_str(response.code))
        piv, _kid, _ctx = decode_option(value)
        if piv is None:
            n = nonce(self._common_iv, self.sid, request_piv)
        else:
            n = nonce(self._common_iv, self.rid, piv)
        plaintext = decrypt(self._recipient_key, n, aad(self.sid, request_piv), response.payload)
        if not plaintext or plaintext[0] < 64:
            raise OscoreError("protected response with no response code")
        try:
            inner = coap.decode(b"\x40" + plaintext[:1] + b"\x00\x00" + plaintext[1:])
        except Exception as e:
            raise OscoreError("protected response malformed: %s" % e) from None
        inner.mtype = response.mtype
        inner.mid = response.mid
        inner.token = response.token
        return inner
