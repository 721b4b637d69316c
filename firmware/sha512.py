"""SHA-512 (FIPS 180-4 §6.4) in pure MicroPython: ESP32 MicroPython's ``hashlib`` lacks it.

Usage::

    import sha512
    h = sha512.sha512(b"manifest ")
    h.update(b"bytes")
    h.digest()                   # 64 bytes; the hash can take more data afterwards
    sha512.digest(b"abc")        # in one call

Why 16-bit limbs: MicroPython's small ints hold 31 bits, so a 64-bit word held as one int is
a heap object and every rotate, xor and add of a word-at-a-time SHA-512 allocates (about
125 KB of garbage per 128-byte block, measured on the VM: more than an ESP32's heap, so a
collection every block). Here each word is four 16-bit limbs (limb 0 the least significant),
every intermediate stays below 2**30, and a block allocates almost nothing (two slices of the
state, under 200 bytes): the message schedule lives in four lists made once per hash.
A rotation is a renaming of limbs plus one pair of shifts; an addition carries between limbs.
"""

# fmt: off
# FIPS 180-4 §4.2.3: the first 64 bits of the fractional parts of the cube roots of the
# first eighty primes.
_K64 = (
    0x428A2F98D728AE22, 0x7137449123EF65CD, 0xB5C0FBCFEC4D3B2F, 0xE9B5DBA58189DBBC,
    0x3956C25BF348B538, 0x59F111F1B605D019, 0x923F82A4AF194F9B, 0xAB1C5ED5DA6D8118,
    0xD807AA98A3030242, 0x12835B0145706FBE, 0x243185BE4EE4B28C, 0x550C7DC3D5FFB4E2,
    0x72BE5D74F27B896F, 0x80DEB1FE3B1696B1, 0x9BDC06A725C71235, 0xC19BF174CF692694,
    0xE49B69C19EF14AD2, 0xEFBE4786384F25E3, 0x0FC19DC68B8CD5B5, 0x240CA1CC77AC9C65,
    0x2DE92C6F592B0275, 0x4A7484AA6EA6E483, 0x5CB0A9DCBD41FBD4, 0x76F988DA831153B5,
    0x983E5152EE66DFAB, 0xA831C66D2DB43210, 0xB00327C898FB213F, 0xBF597FC7BEEF0EE4,
    0xC6E00BF33DA88FC2, 0xD5A79147930AA725, 0x06CA6351E003826F, 0x142929670A0E6E70,
    0x27B70A8546D22FFC, 0x2E1B21385C26C926, 0x4D2C6DFC5AC42AED, 0x53380D139D95B3DF,
    0x650A73548BAF63DE, 0x766A0ABB3C77B2A8, 0x81C2C92E47EDAEE6, 0x92722C851482353B,
    0xA2BFE8A14CF10364, 0xA81A664BBC423001, 0xC24B8B70D0F89791, 0xC76C51A30654BE30,
    0xD192E819D6EF5218, 0xD69906245565A910, 0xF40E35855771202A, 0x106AA07032BBD1B8,
    0x19A4C116B8D2D0C8, 0x1E376C085141AB53, 0x2748774CDF8EEB99, 0x34B0BCB5E19B48A8,
    0x391C0CB3C5C95A63, 0x4ED8AA4AE3418ACB, 0x5B9CCA4F7763E373, 0x682E6FF3D6B2B8A3,
    0x748F82EE5DEFB2FC, 0x78A5636F43172F60, 0x84C87814A1F0AB72, 0x8CC702081A6439EC,
    0x90BEFFFA23631E28, 0xA4506CEBDE82BDE9, 0xBEF9A3F7B2C67915, 0xC67178F2E372532B,
    0xCA273ECEEA26619C, 0xD186B8C721C0C207, 0xEADA7DD6CDE0EB1E, 0xF57D4F7FEE6ED178,
    0x06F067AA72176FBA, 0x0A637DC5A2C898A6, 0x113F9804BEF90DAE, 0x1B710B35131C471B,
    0x28DB77F523047D84, 0x32CAAB7B40C72493, 0x3C9EBE0A15C9BEBC, 0x431D67C49C100D4C,
    0x4CC5D4BECB3E42B6, 0x597F299CFC657E2A, 0x5FCB6FAB3AD6FAEC, 0x6C44198C4A475817,
)

# FIPS 180-4 §5.3.5: the first 64 bits of the fractional parts of the square roots of the
# first eight primes.
_IV64 = (
    0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
    0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179,
)
# fmt: on


def _limbs(words):
    """Four tuples: limb i (bits 16*i .. 16*i+15) of each 64-bit word."""
    return tuple(tuple((w >> (16 * i)) & 0xFFFF for w in words) for i in range(4))


_K = _limbs(_K64)
# H0..H7 as 32 limbs, word j's limb i at 4*j + i.
_IV = tuple((w >> (16 * i)) & 0xFFFF for w in _IV64 for i in range(4))
del _K64, _IV64


def _compress(h, w, d, o):
    """Fold the 128-byte block at ``d[o:]`` into the state ``h`` (32 limbs, in place).

    ``w`` is four lists of 80 small ints (the message schedule, limb by limb); ``d`` is
    bytes, bytearray or memoryview, read byte by byte so no slice is allocated.
    """
    w0, w1, w2, w3 = w
    k0, k1, k2, k3 = _K
    for t in range(16):  # big-endian words
        w3[t] = d[o] << 8 | d[o + 1]
        w2[t] = d[o + 2] << 8 | d[o + 3]
        w1[t] = d[o + 4] << 8 | d[o + 5]
        w0[t] = d[o + 6] << 8 | d[o + 7]
        o += 8
    for t in range(16, 80):
        # W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16]
        i = t - 15
        x0 = w0[i]
        x1 = w1[i]
        x2 = w2[i]
        x3 = w3[i]
        i = t - 2
        y0 = w0[i]
        y1 = w1[i]
        y2 = w2[i]
        y3 = w3[i]
        i = t - 7
        j = t - 16
        # σ0(x) = x ROTR 1 ^ x ROTR 8 ^ x SHR 7; σ1(y) = y ROTR 19 ^ y ROTR 61 ^ y SHR 6.
        # Limb i of x ROTR r takes limbs i + r // 16 and the next one; bits shifted past 16
        # are masked off after the xors. (x1 & 1) << 15, not x1 << 15: that could reach
        # 2**31, beyond a small int.
        c = (
            w0[i]
            + w0[j]
            + (((x0 >> 1 | (x1 & 1) << 15) ^ (x0 >> 8 | x1 << 8) ^ (x0 >> 7 | x1 << 9)) & 0xFFFF)
            + (((y1 >> 3 | y2 << 13) ^ (y3 >> 13 | y0 << 3) ^ (y0 >> 6 | y1 << 10)) & 0xFFFF)
        )
        w0[t] = c & 0xFFFF
        c = (
            (c >> 16)
            + w1[i]
            + w1[j]
            + (((x1 >> 1 | (x2 & 1) << 15) ^ (x1 >> 8 | x2 << 8) ^ (x1 >> 7 | x2 << 9)) & 0xFFFF)
            + (((y2 >> 3 | y3 << 13) ^ (y0 >> 13 | y1 << 3) ^ (y1 >> 6 | y2 << 10)) & 0xFFFF)
        )
        w1[t] = c & 0xFFFF
        c = (
            (c >> 16)
            + w2[i]
            + w2[j]
            + (((x2 >> 1 | (x3 & 1) << 15) ^ (x2 >> 8 | x3 << 8) ^ (x2 >> 7 | x3 << 9)) & 0xFFFF)
            + (((y3 >> 3 | y0 << 13) ^ (y1 >> 13 | y2 << 3) ^ (y2 >> 6 | y3 << 10)) & 0xFFFF)
        )
        w2[t] = c & 0xFFFF
        w3[t] = (
            (c >> 16)
            + w3[i]
            + w3[j]
            + (((x3 >> 1 | (x0 & 1) << 15) ^ (x3 >> 8 | x0 << 8) ^ (x3 >> 7)) & 0xFFFF)
            + (((y0 >> 3 | y1 << 13) ^ (y2 >> 13 | y3 << 3) ^ (y3 >> 6)) & 0xFFFF)
        ) & 0xFFFF

    a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, c2, c3, d0, d1, d2, d3 = h[0:16]
    e0, e1, e2, e3, f0, f1, f2, f3, g0, g1, g2, g3, h0, h1, h2, h3 = h[16:32]
    for t in range(80):
        # T1 = h + Σ1(e) + Ch(e, f, g) + K[t] + W[t], per limb, carried when added to d and T2.
        # Σ1(e) = e ROTR 14 ^ e ROTR 18 ^ e ROTR 41
        u0 = (
            h0
            + (((e0 >> 14 | e1 << 2) ^ (e1 >> 2 | e2 << 14) ^ (e2 >> 9 | e3 << 7)) & 0xFFFF)
            + (g0 ^ (e0 & (f0 ^ g0)))
            + k0[t]
            + w0[t]
        )
        u1 = (
            h1
            + (((e1 >> 14 | e2 << 2) ^ (e2 >> 2 | e3 << 14) ^ (e3 >> 9 | e0 << 7)) & 0xFFFF)
            + (g1 ^ (e1 & (f1 ^ g1)))
            + k1[t]
            + w1[t]
        )
        u2 = (
            h2
            + (((e2 >> 14 | e3 << 2) ^ (e3 >> 2 | e0 << 14) ^ (e0 >> 9 | e1 << 7)) & 0xFFFF)
            + (g2 ^ (e2 & (f2 ^ g2)))
            + k2[t]
            + w2[t]
        )
        u3 = (
            h3
            + (((e3 >> 14 | e0 << 2) ^ (e0 >> 2 | e1 << 14) ^ (e1 >> 9 | e2 << 7)) & 0xFFFF)
            + (g3 ^ (e3 & (f3 ^ g3)))
            + k3[t]
            + w3[t]
        )
        # T2 = Σ0(a) + Maj(a, b, c); Σ0(a) = a ROTR 28 ^ a ROTR 34 ^ a ROTR 39
        v0 = (((a1 >> 12 | a2 << 4) ^ (a2 >> 2 | a3 << 14) ^ (a2 >> 7 | a3 << 9)) & 0xFFFF) + (
            (a0 & b0) | (c0 & (a0 | b0))
        )
        v1 = (((a2 >> 12 | a3 << 4) ^ (a3 >> 2 | a0 << 14) ^ (a3 >> 7 | a0 << 9)) & 0xFFFF) + (
            (a1 & b1) | (c1 & (a1 | b1))
        )
        v2 = (((a3 >> 12 | a0 << 4) ^ (a0 >> 2 | a1 << 14) ^ (a0 >> 7 | a1 << 9)) & 0xFFFF) + (
            (a2 & b2) | (c2 & (a2 | b2))
        )
        v3 = (((a0 >> 12 | a1 << 4) ^ (a1 >> 2 | a2 << 14) ^ (a1 >> 7 | a2 << 9)) & 0xFFFF) + (
            (a3 & b3) | (c3 & (a3 | b3))
        )
        # h = g; g = f; f = e; e = d + T1; d = c; c = b; b = a; a = T1 + T2
        h0 = g0
        h1 = g1
        h2 = g2
        h3 = g3
        g0 = f0
        g1 = f1
        g2 = f2
        g3 = f3
        f0 = e0
        f1 = e1
        f2 = e2
        f3 = e3
        x = d0 + u0
        e0 = x & 0xFFFF
        x = d1 + u1 + (x >> 16)
        e1 = x & 0xFFFF
        x = d2 + u2 + (x >> 16)
        e2 = x & 0xFFFF
        e3 = (d3 + u3 + (x >> 16)) & 0xFFFF
        d0 = c0
        d1 = c1
        d2 = c2
        d3 = c3
        c0 = b0
        c1 = b1
        c2 = b2
        c3 = b3
        b0 = a0
        b1 = a1
        b2 = a2
        b3 = a3
        x = u0 + v0
        a0 = x & 0xFFFF
        x = u1 + v1 + (x >> 16)
        a1 = x & 0xFFFF
        x = u2 + v2 + (x >> 16)
        a2 = x & 0xFFFF
        a3 = (u3 + v3 + (x >> 16)) & 0xFFFF

    _add(h, 0, a0, a1, a2, a3)
    _add(h, 4, b0, b1, b2, b3)
    _add(h, 8, c0, c1, c2, c3)
    _add(h, 12, d0, d1, d2, d3)
    _add(h, 16, e0, e1, e2, e3)
    _add(h, 20, f0, f1, f2, f3)
    _add(h, 24, g0, g1, g2, g3)
    _add(h, 28, h0, h1, h2, h3)


def _add(h, i, x0, x1, x2, x3):
    """The word at ``h[i:i+4]`` plus (x0, x1, x2, x3), modulo 2**64."""
    c = h[i] + x0
    h[i] = c & 0xFFFF
    c = h[i + 1] + x1 + (c >> 16)
    h[i + 1] = c & 0xFFFF
    c = h[i + 2] + x2 + (c >> 16)
    h[i + 2] = c & 0xFFFF
    h[i + 3] = (h[i + 3] + x3 + (c >> 16)) & 0xFFFF


class sha512:
    """Incremental SHA-512, as ``hashlib.sha512``: ``update(data)`` any number of times,
    ``digest()`` at any point (it does not end the hash)."""

    digest_size = 64
    block_size = 128

    def __init__(self, data=None):
        self._h = list(_IV)
        self._w = ([0] * 80, [0] * 80, [0] * 80, [0] * 80)
        self._buf = bytearray(128)
        self._fill = 0  # bytes waiting in _buf
        self._length = 0  # bytes hashed so far
        if data is not None:
            self.update(data)

    def update(self, data):
        n = len(data)
        self._length += n
        o = 0
        buf = self._buf
        fill = self._fill
        if fill:
            take = min(128 - fill, n)
            buf[fill : fill + take] = memoryview(data)[0:take]
            fill += take
            o = take
            if fill < 128:
                self._fill = fill
                return
            _compress(self._h, self._w, buf, 0)
        while n - o >= 128:
            _compress(self._h, self._w, data, o)
            o += 128
        self._fill = n - o
        if o < n:
            buf[0 : n - o] = memoryview(data)[o:n]

    def digest(self):
        h = list(self._h)
        fill = self._fill
        last = bytearray(256)  # FIPS 180-4 §5.1.2: 0x80, zeros, the length in bits (128-bit)
        last[0:fill] = memoryview(self._buf)[0:fill]
        last[fill] = 0x80
        end = 128 if fill < 112 else 256
        bits = self._length * 8
        for i in range(8):  # the top 8 bytes of the length stay 0 below 2**61 bytes
            last[end - 1 - i] = (bits >> (8 * i)) & 0xFF
        _compress(h, self._w, last, 0)
        if end == 256:
            _compress(h, self._w, last, 128)
        out = bytearray(64)
        for j in range(8):
            for i in range(4):
                limb = h[4 * j + 3 - i]
                out[8 * j + 2 * i] = limb >> 8
                out[8 * j + 2 * i + 1] = limb & 0xFF
        return bytes(out)


def digest(data):
    """SHA-512 of ``data`` in one call."""
    return sha512(data).digest()
