"""OSCORE key material and key derivation (RFC 8613 §3.2): what the board needs once, at
start, to make its ``oscore.Context``, and again when its gateway hands it a new key
(``install``); ``app`` imports it then and drops it, so its code is not on the heap while
the board runs.

``/oscore.json`` holds the board's key material, written at provisioning::

    {"sid": "0a1b", "rid": "", "secret": "<32 hex digits or more>", "salt": ""}

``sid`` is the board's Sender ID, ``rid`` the gateway's (empty), ``secret`` the Master Secret,
``salt`` the Master Salt (may be empty). The secret stays in this module's locals: no log
line, no repr carries it, and the Context keeps only the keys derived from it. HKDF-SHA-256
is built on ``hashlib.sha256``, since MicroPython has no ``hmac``.

    import oscorekeys
    ctx = oscorekeys.load(board.flash)  # None without /oscore.json: plain CoAP
    ctx = oscorekeys.install(board.flash, text)  # a new key, on flash and in use
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


def _parse(text, path: str):
    """(secret, salt, sid, rid) of a key file's ``text``; OscoreError if it is unusable."""
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
    if len(sid) > _MAX_ID or len(rid) > _MAX_ID or sid == rid:
        raise OscoreError("Sender and Recipient IDs: at most 7 bytes, and different")
    return secret, salt, sid, rid


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
    secret, salt, sid, rid = _parse(text, path)
    return context(secret, salt, sid, rid, flash, stored_sequence(flash, seq_path), None, seq_path)


def install(flash, text, path: str = PATH, seq_path: str | None = None):
    """Key material the gateway handed over (a key file's JSON, in a response its old key
    protected): checked as ``load`` checks it, written in place of ``/oscore.json``, and
    the ``oscore.Context`` of it. OscoreError (nothing written) if it is unusable.

    Written whole to ``/oscore.json.new`` and renamed over ``/oscore.json``: a power cut
    leaves the old key or the new one, each whole. With the old one, the gateway, still
    answering under it, hands the new one over again at the board's next request.

    The sender sequence goes on from the limit stored in ``seq_path``, as after a reboot
    (``oscore.Context.take``): every number below it may have been used, under the old key,
    and none at or above it has, under any key. A nonce repeats only if one Sender
    Sequence Number is used twice under one key: the new key starts where no number was
    used and rises, so it never repeats one of its own, whatever happened under the old
    key. Starting again from 0 would be safe only for a key never used before, which the
    board cannot know (and the gateway's new context accepts any number above its fresh
    replay window).
    """
    secret, salt, sid, rid = _parse(text, "key handed over")
    tmp = path + ".new"
    f = flash.open(tmp, "w")
    try:
        f.write(text)
    finally:
        f.close()
    flash.rename(tmp, path)
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
