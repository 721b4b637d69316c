"""COSE_Sign1 verification (RFC 9052 §4.2) with EdDSA (Ed25519): how the board checks a
signed manifest, release-key certificate or desired-state document.

Usage::

    import cose
    from errors import SignatureError
    try:
        protected, payload = cose.verify(data, root_public_key)
    except SignatureError as e:
        print("refused:", e)

    # The same in slices, so an asyncio app keeps sampling during the seconds it takes:
    for result in cose.verify_steps(data, root_public_key):
        await asyncio.sleep(0)
    protected, payload = result

Pure functions between bytes and plain objects: no I/O, no clock. ``verify`` returns the
protected header (a dict keyed by COSE labels) and the payload (bytes) only when the
signature verifies; the unprotected header is not returned, since nothing vouches for it.
Refusals, each a ``SignatureError``:

- ``CoseFormatError``: not CBOR (``cbor.loads`` is strict: no trailing bytes, no duplicate
  keys), not an array of four (protected bstr, unprotected map, payload bstr, signature
  bstr), a protected header that is not a map, a label in both headers (RFC 9052 §3), a
  ``crit`` header (this verifier understands no extension, so it must refuse them), or a
  detached (nil) payload;
- ``CoseTagError``: not tag 18. Untagged messages are refused too: everything simpul signs
  carries the tag, so a missing one means it was made for another context;
- ``CoseAlgorithmError``: the protected header's ``alg`` (label 1) is absent or not EdDSA
  (-8). An ``alg`` only in the unprotected header is refused: an attacker could change it;
- ``BadSignature``: the signature (64 bytes) does not verify over the Sig_structure
  ``["Signature1", protected, external_aad, payload]`` (RFC 9052 §4.4); see ``ed25519``.
"""

import cbor
import ed25519
from errors import CborError, CoseAlgorithmError, CoseFormatError, CoseTagError

SIGN1_TAG = 18
ALG = 1  # header labels (RFC 9052 §3.1)
CRIT = 2
KID = 4
EDDSA = -8  # COSE algorithm (RFC 9053 §2.2)


def _map(data, what):
    try:
        header = cbor.loads(data) if data else {}
    except CborError as e:
        raise CoseFormatError("%s: not CBOR (%s)" % (what, e)) from None
    if not isinstance(header, dict):
        raise CoseFormatError(what + " is not a map")
    return header


def _checked(data, external_aad):
    """(protected header, payload, Sig_structure bytes, signature) of a COSE_Sign1 whose
    form and headers pass; raise a ``CoseError`` otherwise."""
    try:
        item = cbor.loads(data)
    except CborError as e:
        raise CoseFormatError("not CBOR (%s)" % e) from None
    if not isinstance(item, cbor.Tag):
        raise CoseTagError("untagged: a COSE_Sign1 carries tag 18")
    if item.tag != SIGN1_TAG:
        raise CoseTagError("tag %d, not 18 (COSE_Sign1)" % item.tag)
    body = item.value
    if not isinstance(body, list) or len(body) != 4:
        raise CoseFormatError("COSE_Sign1 is not an array of four items")
    protected_bytes, unprotected, payload, signature = body
    if not isinstance(protected_bytes, bytes):
        raise CoseFormatError("protected header is not a byte string")
    if not isinstance(unprotected, dict):
        raise CoseFormatError("unprotected header is not a map")
    if payload is None:
        raise CoseFormatError("detached payload: not supported")
    if not isinstance(payload, bytes):
        raise CoseFormatError("payload is not a byte string")
    if not isinstance(signature, bytes):
        raise CoseFormatError("signature is not a byte string")
    protected = _map(protected_bytes, "protected header")
    for label in protected:
        if label in unprotected:
            raise CoseFormatError("label %r in both headers" % (label,))
    if CRIT in protected or CRIT in unprotected:
        raise CoseFormatError("critical headers this verifier does not understand")
    alg = protected.get(ALG)
    if alg is None:
        where = "only in the unprotected header" if ALG in unprotected else "absent"
        raise CoseAlgorithmError("alg is " + where)
    if not isinstance(alg, int) or isinstance(alg, bool) or alg != EDDSA:
        raise CoseAlgorithmError("alg %r, not EdDSA (-8)" % (alg,))
    to_be_signed = cbor.dumps(["Signature1", protected_bytes, external_aad, payload])
    return protected, payload, to_be_signed, signature


def verify_steps(data, public_key, external_aad=b"", step_bits=16):
    """``verify`` in slices, for an app that keeps its other tasks running meanwhile: a
    generator that yields None while the signature is checked (see
    ``ed25519.verify_steps``) and, last, (protected header, payload)::

        for result in cose.verify_steps(data, key):
            await asyncio.sleep(0)
        protected, payload = result

    It raises as ``verify`` does, and yields the result only once the signature verifies.
    ``step_bits`` is passed on to ``ed25519.verify_steps``.
    """
    protected, payload, to_be_signed, signature = _checked(data, external_aad)
    yield from ed25519.verify_steps(public_key, to_be_signed, signature, step_bits)
    yield protected, payload


def unverified(data):
    """(protected header, payload) of a COSE_Sign1 whose form and headers pass, its
    signature NOT checked: to read which key to check it with, or what to refuse at once.
    Never act on it otherwise. Raises as ``verify`` does for form, tag and alg."""
    protected, payload, _, _ = _checked(data, b"")
    return protected, payload


def verify(data, public_key, external_aad=b""):
    """(protected header, payload) of the COSE_Sign1 ``data`` if ``public_key`` (32 bytes,
    Ed25519) signed it with ``external_aad``; raise a ``SignatureError`` otherwise."""
    for result in verify_steps(data, public_key, external_aad):
        if result is not None:  # the last item, after the signature verified
            return result
