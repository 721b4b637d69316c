"""Ed25519 signature verification (RFC 8032 §5.1.7) in pure MicroPython, with ``sha512``.

Usage::

    import ed25519
    from errors import BadSignature
    try:
        ed25519.verify(public_key, message, signature)   # 32, any, 64 bytes
    except BadSignature as e:
        print("refused:", e)                               # names the check that refused it

    # The same check in slices, for an asyncio app that must keep its other tasks running:
    for _ in ed25519.verify_steps(public_key, message, signature):
        await asyncio.sleep(0)                              # raises BadSignature as verify

What is checked, in this order, each refusal a ``BadSignature`` that says which:

- the key is 32 bytes and the signature 64;
- S (the signature's second half) is below the group order L, so no one can turn a
  signature into another valid one by adding L (malleability);
- A (the key) and R (the first half) are canonical encodings of curve points: y below p,
  and no "negative zero" x (x = 0 with the sign bit set); RFC 8032 §5.1.3 decoding;
- A is not one of the eight points of small order: with such a key [k]A takes at most eight
  values whatever the message, so one signature would verify for many messages. RFC 8032
  does not require this; the board only ever holds keys it was given, which never have
  small order, so refusing costs nothing;
- [S]B = R + [k]A, k = SHA-512(R || A || message) mod L: the cofactorless equation of
  RFC 8032 §5.1.7 (the variant without the factor 8 that the RFC allows, as libsodium and
  most verifiers use). R is not refused for small order: only the holder of the secret key
  can satisfy the equation, whatever R is.

Points are in extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, xy = T/Z, so no step
needs an inversion; [S]B - [k]A is one interleaved double-and-add over width-5 NAF digits of
both scalars. The only modular exponentiation is one per decoded point, MicroPython's
3-argument ``pow`` (in C). A verify allocates about 0.7 MB of short-lived big ints in all,
but its live heap grows by only about 9 KB (tests/bench/board_verify.py measures both on
the VM). Verification uses no secret, so it need not run in constant time. Signing is not
here: boards verify only.
"""

import sha512
from errors import BadSignature

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493  # order of the base point
_D = 37095705934669439343138083508754565189542113879843219016388785533085940283555  # -121665/121666
_D2 = 16295367250680780974490674513165176452449235426866156013048779062215315747161  # 2d
_SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752
# The base point B (RFC 8032 §5.1): y = 4/5, x even.
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
_WIDTH = 5  # NAF window: 8 odd multiples per table


def _decode(s, what):
    """The point that 32 bytes ``s`` encode (RFC 8032 §5.1.3), as (X, Y, Z, T) with Z = 1."""
    p = _P
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= p:
        raise BadSignature(what + ": non-canonical encoding (y >= p)")
    # x = sqrt(u / v), u = y^2 - 1, v = d y^2 + 1, as u v^3 (u v^7)^((p-5)/8): one pow.
    yy = y * y % p
    u = (yy - 1) % p
    v = (_D * yy + 1) % p
    v3 = v * v % p * v % p
    x = u * v3 % p * pow(u * v3 % p * v3 % p * v % p, (p - 5) >> 3, p) % p
    vxx = v * x % p * x % p
    if vxx != u:
        if vxx != (p - u) % p:
            raise BadSignature(what + ": not the encoding of a curve point")
        x = x * _SQRT_M1 % p
    if x & 1 != sign:
        if x == 0:
            raise BadSignature(what + ": non-canonical encoding (x = 0 with the sign bit set)")
        x = p - x
    return (x, y, 1, x * y % p)


def _double(pt):
    """2 * pt (RFC 8032 §5.1.4, dbl-2008-hwcd): 4 squarings, 4 multiplications."""
    p = _P
    x, y, z, _ = pt
    a = x * x % p
    b = y * y % p
    c = 2 * z * z % p
    h = a + b
    xy = x + y
    e = h - xy * xy % p
    g = a - b
    f = c + g
    return (e * f % p, g * h % p, f * g % p, e * h % p)


def _cached(pt):
    """(Y+X, Y-X, 2Z, 2dT): a point as ``_add`` takes it."""
    p = _P
    x, y, z, t = pt
    return ((y + x) % p, (y - x) % p, 2 * z % p, _D2 * t % p)


def _add(pt, c, negate):
    """pt + c, or pt - c if ``negate`` (RFC 8032 §5.1.4, add-2008-hwcd-3): 8 multiplications.
    ``pt`` is extended, ``c`` cached; -(x, y) = (-x, y) swaps Y+X with Y-X and negates T."""
    p = _P
    x, y, z, t = pt
    if negate:
        a = (y - x) * c[0] % p
        b = (y + x) * c[1] % p
        cc = -t * c[3] % p
    else:
        a = (y - x) * c[1] % p
        b = (y + x) * c[0] % p
        cc = t * c[3] % p
    d = z * c[2] % p
    e = b - a
    f = d - cc
    g = d + cc
    h = b + a
    return (e * f % p, g * h % p, f * g % p, e * h % p)


def _is_identity(pt):
    return pt[0] % _P == 0 and (pt[1] - pt[2]) % _P == 0


def _odd_multiples(pt):
    """pt, 3pt, 5pt, ..., 15pt, cached."""
    twice = _cached(_double(pt))
    out = [_cached(pt)]
    for _ in range((1 << (_WIDTH - 2)) - 1):
        pt = _add(pt, twice, False)
        out.append(_cached(pt))
    return out


def _naf(scalar):
    """Width-5 NAF of ``scalar`` (below 2**253) as 256 digits, least significant first: each
    0 or odd in -15..15, a nonzero one followed by at least four zeros. Read from the
    scalar's bytes with small ints, so recoding allocates no big ints (as libsecp256k1's
    ``ecmult_wnaf``)."""
    data = scalar.to_bytes(32, "little")
    digits = [0] * 256
    carry = 0
    bit = 0
    while bit < 256:
        if (data[bit >> 3] >> (bit & 7)) & 1 == carry:
            bit += 1
            continue
        word = carry
        for j in range(min(_WIDTH, 256 - bit)):
            word += ((data[(bit + j) >> 3] >> ((bit + j) & 7)) & 1) << j
        carry = (word >> (_WIDTH - 1)) & 1
        digits[bit] = word - (carry << _WIDTH)
        bit += _WIDTH
    return digits


def _challenge(r, public_key, message):
    """k = SHA-512(R || A || message) mod L, over the encodings as received."""
    h = sha512.sha512(r)
    h.update(public_key)
    h.update(message)
    return int.from_bytes(h.digest(), "little") % _L


def verify_steps(public_key, message, signature, step_bits=16):
    """``verify`` as a generator: it yields None after the checks and the hash, after each
    table of multiples, and after every ``step_bits`` bits of the scalar multiplication
    (about 19 slices in all), and raises ``BadSignature`` as ``verify`` does; it ends
    without error when the signature is valid."""
    if len(public_key) != 32:
        raise BadSignature("public key: %d bytes, not 32" % len(public_key))
    if len(signature) != 64:
        raise BadSignature("signature: %d bytes, not 64" % len(signature))
    p = _P
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        raise BadSignature("signature: S is not below the group order")
    a = _decode(public_key, "public key")
    if _is_identity(_double(_double(_double(a)))):
        raise BadSignature("public key: a point of small order")
    r = _decode(signature[0:32], "R")
    k = _challenge(signature[0:32], public_key, message)
    yield

    # [S]B - [k]A, then compare with R.
    b_table = _odd_multiples((_BX, _BY, 1, _BX * _BY % p))
    yield
    a_table = _odd_multiples(a)
    yield
    s_digits = _naf(s)
    k_digits = _naf(k)
    top = 255
    while top > 0 and not (s_digits[top] or k_digits[top]):
        top -= 1
    q = (0, 1, 1, 0)
    for i in range(top, -1, -1):
        q = _double(q)
        d = s_digits[i]
        if d:
            q = _add(q, b_table[abs(d) >> 1], d < 0)
        d = k_digits[i]
        if d:
            q = _add(q, a_table[abs(d) >> 1], d > 0)
        if i % step_bits == 0:
            yield
    # Projectively: x = X/Z and y = Y/Z against R's affine x and y.
    if (q[0] - r[0] * q[2]) % p or (q[1] - r[1] * q[2]) % p:
        raise BadSignature("signature does not match the key and message")


def verify(public_key, message, signature):
    """Return if ``signature`` (64 bytes) is ``public_key``'s (32 bytes) Ed25519 signature
    of ``message`` (bytes); raise ``BadSignature``, naming the check, otherwise."""
    for _ in verify_steps(public_key, message, signature):
        pass
