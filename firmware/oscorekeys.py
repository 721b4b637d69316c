"""OSCORE key material and key derivation (RFC 8613 §3.2): what the board needs once, at
start, to make its ``oscore.Context``; ``app`` imports it then and drops it, so its code is
not on the heap while the board runs.

``/oscore.json`` holds the board's key material, written at provisioning::

    {"sid": "0a1b", "rid": "", "secret": "<32 hex digits or more>", "salt": ""}

``sid`` is the board's Sender ID, ``rid`` the gateway's (empty), ``secret`` the Master Secret,
``salt`` the Master Salt (may be empty). The secret stays in this module's locals: no log
line, no repr carries it, and the Context keeps only the keys derived from it. HKDF-SHA-256
is built on ``hashlib.sha256``, since MicroPython has no ``hmac``.

    import oscorekeys
    ctx = oscorekeys.load(board.flash)  # None without /oscore.json: plain CoAP
"""

import hashlib
import json
from binascii import unhexlify

from errors import OscoreError

PATH = "/oscore.json"
_MAX_ID = 7  # bytes: the nonce's 13 less 6 (RFC 8613 §5.2)

# ``oscore`` (and the AES it brings) is imported only once key material is found, so that a
# board speaking plain CoAP never holds its code.


def bstr(b: bytes) -> bytes:
    """A CBOR byte string (shorter than 256 bytes, as every OSCORE id is)."""
    n = len(b)
    return (bytes((0x40 | n,)) if n < 24 else bytes((0x58, n))) + b


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key + bytes(64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def hkdf(salt: bytes, secret: bytes, info: bytes, length: int) -> bytes:
    # An empty salt pads to the same HMAC key as RFC 5869's HashLen zeros.
    prk = hmac_sha256(salt, secret)
    out = b""
    block = b""
    i = 1
    while len(out) < length:
        block = hmac_sha256(prk, block + info + bytes((i,)))
        out += block
        i += 1
    return out[:length]


def _info(ident: bytes, id_context: bytes | None, kind: str, length: int) -> bytes:
    """The HKDF info (RFC 8613 §3.2.1): [id, id_context, alg_aead, type, L] in CBOR."""
    import oscore

    ctx = b"\xf6" if id_context is None else bstr(id_context)
    kind_str = kind.encode()
    return (
        b"\x85"
        + bstr(ident)
        + ctx
        + bytes((oscore.ALG, 0x60 | len(kind_str)))
        + kind_str
        + bytes((length,))
    )


def derive(
    secret: bytes, salt: bytes, sid: bytes, rid: bytes, id_context: bytes | None = None
) -> tuple[bytes, bytes, bytes]:
    """(Sender Key, Recipient Key, Common IV) of a context (RFC 8613 §3.2.1)."""
    import oscore

    return (
        hkdf(salt, secret, _info(sid, id_context, "Key", 16), 16),
        hkdf(salt, secret, _info(rid, id_context, "Key", 16), 16),
        hkdf(salt, secret, _info(b"", id_context, "IV", oscore.NONCE_BYTES), oscore.NONCE_BYTES),
    )


def context(secret, salt, sid, rid, flash, next, id_context=None, seq_path=None):
    """The ``oscore.Context`` of this key material, its next Sender Sequence Number ``next``
    (``stored_sequence``), reserved in ``seq_path`` (``oscore.SEQ_PATH`` by default) on
    ``flash`` (see ``oscore.Context``)."""
    import oscore

    if len(sid) > _MAX_ID or len(rid) > _MAX_ID:
        raise OscoreError("Sender and Recipient IDs are at most 7 bytes")
    if sid == rid:
        raise OscoreError("Sender and Recipient IDs must differ")
    keys = derive(secret, salt, sid, rid, id_context)
    return oscore.Context(keys, sid, rid, flash, next, id_context, seq_path or oscore.SEQ_PATH)


def load(flash, path: str = PATH, seq_path: str | None = None):
    """The board's ``oscore.Context`` from ``/oscore.json``, or None when it has none (plain
    CoAP); ``seq_path`` is ``oscore.SEQ_PATH`` by default.
    OscoreError for key material that is there but unusable: never a silent downgrade."""
    try:
        f = flash.open(path, "r")
    except OSError:
        return None
    try:
        text = f.read()
    finally:
        f.close()
    try:
        keys = json.loads(text)
        sid = unhexlify(keys["sid"])
        rid = unhexlify(keys["rid"])
        secret = unhexlify(keys["secret"])
        salt = unhexlify(keys.get("salt", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise OscoreError("key material unreadable: " + path) from None
    if len(secret) < 16:
        raise OscoreError("Master Secret shorter than 16 bytes")
    return context(secret, salt, sid, rid, flash, stored_sequence(flash, seq_path), None, seq_path)


def stored_sequence(flash, path: str | None = None) -> int:
    """The Sender Sequence Number limit stored in ``path`` (``oscore.SEQ_PATH`` by default;
    see ``oscore.Context.take``): no number below it may be used again; 0 for a key never
    used."""
    if path is None:
        import oscore

        path = oscore.SEQ_PATH
    try:
        f = flash.open(path, "r")
    except OSError:
        return 0
    try:
        text = f.read()
    finally:
        f.close()
    try:
        return int(text)
    except ValueError:
        # Written only by rename, so this is a damaged flash: starting lower could reuse a
        # nonce, so the board sends nothing rather than guess.
        raise OscoreError("sequence store unreadable: " + path) from None
