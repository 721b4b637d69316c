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
nonce; a nonce must never be used twice with one key. ``Context.take`` keeps, in
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

**Heap.** This module stays on the heap while the board runs, beside the application (the
budget of ``tests/hw_vm/test_heap_budget.py``): what runs once is in ``oscorekeys``, every
function here is one that each request needs, and a request's plaintext is encrypted where
``coap.encode`` wrote it.
"""

from binascii import hexlify

import coap
import cryptolib
from errors import OscoreError

SEQ_PATH = "/data/oscore_seq"
SEQ_STEP = 32  # sequence numbers reserved by one flash write
ALG = 10  # AES-CCM-16-64-128
NONCE_BYTES = 13


def _xor(a, b) -> bytes:
    """a XOR the first len(a) bytes of b."""
    n = len(a)
    return (int.from_bytes(a, "big") ^ int.from_bytes(b[:n], "big")).to_bytes(n, "big")


def ccm(key: bytes, nonce: bytes, aad: bytes, data, sealed: bool = False) -> bytes:
    """AES-CCM-16-64-128 (RFC 3610, M = 8, L = 2): ``data`` sealed (the ciphertext and its
    8-byte tag), or with ``sealed`` opened (the plaintext; OscoreError if its tag does not
    verify). The key stream S_0 .. S_m in one ECB call, the CBC-MAC in one CBC call (zero
    IV), each in one buffer."""
    n = len(data) - 8 if sealed else len(data)
    if n < 0:
        raise OscoreError("tag does not verify")  # there is none
    count = (n + 15) // 16 + 1
    s = bytearray(16 * count)
    for i in range(count):
        at = 16 * i
        s[at] = 1  # L-1
        s[at + 1 : at + 14] = nonce
        s[at + 14] = i >> 8
        s[at + 15] = i & 0xFF
    cryptolib.aes(key, 1).encrypt(s, s)
    out = _xor(memoryview(data)[:n], memoryview(s)[16:]) if n else b""
    b = bytearray(b"\x59")  # Adata, M = 8: (8-2)/2 << 3, L = 2: L-1
    b.extend(nonce)
    b.extend(n.to_bytes(2, "big"))
    b.extend(len(aad).to_bytes(2, "big"))
    b.extend(aad)
    b.extend(bytes(-len(b) % 16))
    b.extend(out if sealed else data)
    b.extend(bytes(-len(b) % 16))
    cryptolib.aes(key, 2, bytes(16)).encrypt(b, b)
    tag = _xor(memoryview(b)[-16:-8], s)
    if not sealed:
        return out + tag
    # One big-integer XOR: no early exit at the first byte that differs.
    if int.from_bytes(tag, "big") ^ int.from_bytes(memoryview(data)[n:], "big"):
        raise OscoreError("tag does not verify")
    return out


def nonce(common_iv: bytes, id_piv: bytes, piv: bytes) -> bytes:
    """The AEAD nonce (§5.2): size of ID_PIV, ID_PIV and PIV padded, XOR the Common IV."""
    n = bytearray(NONCE_BYTES)
    n[0] = len(id_piv)
    n[8 - len(id_piv) : 8] = id_piv
    n[NONCE_BYTES - len(piv) :] = piv
    return _xor(n, common_iv)


def aad(kid: bytes, piv: bytes) -> bytes:
    """The Enc_structure (§5.4): ["Encrypt0", h'', external_aad], external_aad being
    bstr .cbor [1, [alg], request_kid, request_piv, h''] (no Class I options). An id is at
    most 7 bytes and a Partial IV 5, so every byte string's length fits its first byte."""
    k = len(kid)
    p = len(piv)
    head = bytes((0x47 + k + p, 0x85, 1, 0x81, ALG, 0x40 | k))  # 7 + k + p bytes
    return b"\x83\x68Encrypt0\x40" + head + kid + bytes((0x40 | p,)) + piv + b"\x40"


class Context:
    """The board's security context: it protects requests and verifies their responses.

    ``keys``: (Sender Key, Recipient Key, Common IV), from ``oscorekeys.derive``. ``next``:
    the next Sender Sequence Number, from the limit stored in ``path`` on ``flash``
    (``oscorekeys.stored_sequence``), where the numbers are reserved (see the module).
    ``id_context`` is sent as 'kid context' when given (the board uses none).
    ``oscorekeys.context`` makes one, checking the IDs.
    """

    def __init__(
        self,
        keys: tuple,
        sid: bytes,
        rid: bytes,
        flash,
        next: int,
        id_context: bytes | None = None,
        path: str = SEQ_PATH,
    ) -> None:
        self.sid = sid
        self.rid = rid
        self._keys = keys
        self._flash = flash
        self._path = path
        self.next = self.limit = next  # nothing reserved by this boot yet
        # The OSCORE option (§6.1) but its first byte's Partial IV size and the Partial IV:
        # the flags for kid (and kid context) and what follows the Partial IV.
        if id_context is None:
            self._option = (0x08, sid)
        else:
            self._option = (0x18, bytes((len(id_context),)) + id_context + sid)

    def take(self) -> int:
        """The next Sender Sequence Number, durably reserved before it is returned."""
        seq = self.next
        if seq >= self.limit:
            limit = seq + SEQ_STEP
            if limit > 1 << 40:  # RFC 8613 §7.2.1: a Partial IV is at most 5 bytes
                raise OscoreError("sequence numbers spent: renew the key")
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

    def __repr__(self) -> str:
        return "<OSCORE sid=%s rid=%s>" % (hexlify(self.sid).decode(), hexlify(self.rid).decode())

    def protect(self, code: int, options: list, payload: bytes = b"") -> tuple:
        """The outer request of one request: (POST, outer options, ciphertext, its Partial
        IV, which binds the response). Every option goes inside: the board sends none of
        Class U (Uri-Host, Uri-Port, Proxy-Uri, Proxy-Scheme; RFC 8613 §4.1), so the outer
        message has only the OSCORE option."""
        piv = coap.uint_option(self.take()) or b"\x00"  # no leading zeros, 0 as 00
        encoded = coap.encode(0, code, 0, b"", options, payload)
        # The plaintext is the code, the options and the payload: the header's last byte
        # takes the code, and the cipher reads the rest in place.
        buf = bytearray(encoded)
        del encoded
        buf[3] = buf[1]
        sid = self.sid
        body = ccm(
            self._keys[0], nonce(self._keys[2], sid, piv), aad(sid, piv), memoryview(buf)[3:]
        )
        flags, tail = self._option
        return coap.POST, [(coap.OSCORE, bytes((flags | len(piv),)) + piv + tail)], body, piv

    def unprotect(self, response: coap.Message, request_piv: bytes) -> coap.Message:
        """The inner Message of a protected response to the request of ``request_piv``: its
        code, options and payload, with the outer type, message ID and token. OscoreError
        if it is not protected or does not verify."""
        value = response.option(coap.OSCORE)
        if value is None:
            raise OscoreError("response not protected")
        # Only its Partial IV matters here: the board has one context, whatever kid it names.
        n = value[0] & 7 if value else 0
        if value and (value[0] & 0xE0 or n > 5 or n >= len(value)):
            raise OscoreError("OSCORE option malformed")
        if n:
            iv = nonce(self._keys[2], self.rid, value[1 : 1 + n])
        else:
            iv = nonce(self._keys[2], self.sid, request_piv)
        plaintext = ccm(self._keys[1], iv, aad(self.sid, request_piv), response.payload, True)
        if not plaintext or plaintext[0] < 64:
            raise OscoreError("protected response with no response code")
        # A malformed inner message (CoapFormatError) would have come from the gateway itself.
        inner = coap.decode(b"\x40" + plaintext[:1] + b"\x00\x00" + plaintext[1:])
        inner.mtype = response.mtype
        inner.mid = response.mid
        inner.token = response.token
        return inner
